# The settings' defaults: generated from wrapper/settings.py, their one home, by
# `python -m wrapper.settings make > settings.mk` (a test keeps the two equal).
# `#: NAME<tab>EXAMPLE<tab>MEANING` lines are `make help`'s.

#: DATA_DIR		data directory (reference layout)
DATA_DIR ?= ./data
#: MODEL_NAME		model directory name under DATA_DIR/models
MODEL_NAME ?= electra-spanish
#: PRESET		hparams preset in hparams/ (tutorial, electra-small-1m, demo-cpu, demo-gpu) or a .json file
PRESET ?= tutorial
#: HPARAMS_OVERRIDES	'{...}'	JSON object merged over the preset
HPARAMS_OVERRIDES ?=
#: CORPUS	path	.txt/.gz file or directory (several: a:b), or debian-es (Debian's Spanish manuals, man pages and fortunes, offline); empty: OpenSubtitles
CORPUS ?=
#: CORPUS_ENCODING	latin1	the corpus's encoding when it is not UTF-8 (latin1, cp1252)
CORPUS_ENCODING ?=
#: DOWNLOAD_BYTES	N	download only the first N bytes of OpenSubtitles (a slice)
DOWNLOAD_BYTES ?=
#: TRAIN_SIZE		corpus lines kept
TRAIN_SIZE ?= 1000000
#: VOCAB		mbert | train | path/to/vocab.txt
VOCAB ?= $(if $(filter electra-small-1m,$(PRESET)),train,mbert)
#: VOCAB_SIZE		size of a trained vocab (VOCAB=train)
VOCAB_SIZE ?= $(if $(filter electra-small-1m,$(PRESET)),50265,8000)
#: NUM_PROCESSES		dataset builder processes
NUM_PROCESSES ?= 2
#: ELECTRA_DIR		builder/trainer implementation (an upstream checkout works)
ELECTRA_DIR ?= third_party/electra
#: SENTENCE		sentence for make predict
SENTENCE ?= Los pájaros están hablando
#: TASK	fortunes-es	make evaluate: the task
TASK ?=
#: MODEL	path	make evaluate: the model to evaluate
MODEL ?=
#: BASELINE	random	make evaluate: the baseline
BASELINE ?=
#: SEEDS		make evaluate: fine-tuning runs (seeds)
SEEDS ?= 3
#: TASK_DATA	path	make evaluate: local task data
TASK_DATA ?=
#: NUM_GPUS	N	train on N GPUs of this host (num_gpus; several hosts: TF_CONFIG)
NUM_GPUS ?=
#: BACKEND		make pretrain's trainer: tf1 (TF 1.15) | torch (PyTorch, current GPUs)
BACKEND ?= tf1
#: NNODES	N	BACKEND=torch on several hosts: host count
NNODES ?=
#: NODE_RANK	N	BACKEND=torch on several hosts: this host's number (0 to NNODES-1)
NODE_RANK ?=
#: MASTER_ADDR	host	BACKEND=torch on several hosts: NODE_RANK 0's address
MASTER_ADDR ?=
#: MASTER_PORT	port	BACKEND=torch on several hosts: NODE_RANK 0's port
MASTER_PORT ?=
#: PYTHON37	path	Python 3.7 interpreter for make setup
PYTHON37 ?=
#: TARGET		make docker-run: the target to run
TARGET ?= help
#: GPU		make docker-run: GPU=0 on a CPU-only host (no --gpus)
GPU ?= 1
#: IMAGE	ngc	make docker-build/docker-run: ngc (NVIDIA's TF 1.15, Ampere hosts) | torch (the PyTorch trainer, no TF1 stages); empty: the V100 image
IMAGE ?=
#: DOCKER_IMAGE		make docker-build/docker-run: the image's tag
DOCKER_IMAGE ?= $(if $(filter ngc,$(IMAGE)),electra-spanish:tf1.15.5-ngc23.03,$(if $(filter torch,$(IMAGE)),electra-spanish:torch2.13.0-cuda12.8,electra-spanish:tf1.15.5-gpu))
#: DEMO_DATA_DIR		make demo's data directory
DEMO_DATA_DIR ?= $(DATA_DIR)/demo
#: DEMO_VOCAB_SIZE		make demo's trained vocab size
DEMO_VOCAB_SIZE ?= 4000
#: DEMO_SEEDS		make demo's evaluation seeds
DEMO_SEEDS ?= 2
#: DEMO_GPU_VOCAB_SIZE		make demo-gpu's trained vocab size
DEMO_GPU_VOCAB_SIZE ?= 32000
#: DEMO_GPU_SMOKE	1	1: make demo-gpu's path on the CPU, tiny model, a few steps (its test)
DEMO_GPU_SMOKE ?=

# Every variable a stage reads (make exports them; docker-run forwards the given ones).
PIPELINE_VARS := DATA_DIR MODEL_NAME PRESET HPARAMS_OVERRIDES CORPUS CORPUS_ENCODING \
                 DOWNLOAD_BYTES TRAIN_SIZE VOCAB VOCAB_SIZE NUM_PROCESSES ELECTRA_DIR SENTENCE \
                 TASK MODEL BASELINE SEEDS TASK_DATA NUM_GPUS BACKEND NNODES NODE_RANK \
                 MASTER_ADDR MASTER_PORT
USER_VARS     := DATA_DIR MODEL_NAME PRESET HPARAMS_OVERRIDES CORPUS CORPUS_ENCODING \
                 DOWNLOAD_BYTES TRAIN_SIZE VOCAB VOCAB_SIZE NUM_PROCESSES ELECTRA_DIR SENTENCE \
                 TASK MODEL BASELINE SEEDS TASK_DATA NUM_GPUS BACKEND NNODES NODE_RANK \
                 MASTER_ADDR MASTER_PORT PYTHON37 TARGET GPU IMAGE DOCKER_IMAGE DEMO_DATA_DIR \
                 DEMO_VOCAB_SIZE DEMO_SEEDS DEMO_GPU_VOCAB_SIZE DEMO_GPU_SMOKE
