# ELECTRA-small Spanish, reproduced: one target per pipeline stage.
# `make help` lists targets and variables. Paths and pins have one home each:
# requirements.lock (pins), wrapper/paths.py (data layout), third_party/electra/configure_pretraining.py
# (hparam names and defaults).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# ---- variables (documented in `make help`) -------------------------------------------
DATA_DIR          ?= ./data
MODEL_NAME        ?= electra-spanish
PRESET            ?= tutorial
HPARAMS_OVERRIDES ?=
CORPUS            ?=
TRAIN_SIZE        ?= 1000000
VOCAB             ?= mbert
VOCAB_SIZE        ?= 8000
NUM_PROCESSES     ?= 2
ELECTRA_DIR       ?= third_party/electra
SENTENCE          ?= Los pájaros están hablando
PYTHON37          ?=
TARGET            ?= help

VENV        := .venv
VENV_MODERN := .venv-modern
PY          := $(VENV)/bin/python
PY_MODERN   := $(VENV_MODERN)/bin/python
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup setup-modern test demo corpus vocab hparams pretrain-data pretrain \
        convert verify predict tensorboard all docker-build docker-run bench-data bench-train

help: ## this list
	@echo "ELECTRA-small Spanish pipeline. Targets:"
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  \1|\2/' | column -t -s '|'
	@echo
	@echo "Variables (make TARGET VAR=value):"
	@echo "  DATA_DIR=$(DATA_DIR)            data directory (reference layout)"
	@echo "  MODEL_NAME=$(MODEL_NAME)   model directory name under DATA_DIR/models"
	@echo "  PRESET=$(PRESET)               hparams preset in hparams/ (tutorial, electra-small-1m, demo-cpu)"
	@echo "  HPARAMS_OVERRIDES='{...}'     JSON object merged over the preset"
	@echo "  CORPUS=path                   .txt/.gz file or directory instead of OpenSubtitles"
	@echo "  TRAIN_SIZE=$(TRAIN_SIZE)          corpus lines kept"
	@echo "  VOCAB=$(VOCAB)                   mbert | train | path/to/vocab.txt"
	@echo "  VOCAB_SIZE=$(VOCAB_SIZE)              size of a trained vocab (VOCAB=train)"
	@echo "  NUM_PROCESSES=$(NUM_PROCESSES)             dataset builder processes"
	@echo "  ELECTRA_DIR=$(ELECTRA_DIR)  builder/trainer implementation (an upstream checkout works)"
	@echo "  SENTENCE='$(SENTENCE)'  sentence for make predict"
	@echo "  PYTHON37=path                 Python 3.7 interpreter for make setup"

# ---- environments ----------------------------------------------------------------------
setup: $(VENV)/.installed ## create .venv (Python 3.7, TF 1.15) from requirements.lock
$(VENV)/.installed: requirements.lock scripts/setup_venv.sh
	@PYTHON37="$(PYTHON37)" scripts/setup_venv.sh $(VENV) requirements.lock

setup-modern: $(VENV_MODERN)/.installed ## create .venv-modern (Python >= 3.10, current transformers)
$(VENV_MODERN)/.installed: requirements-modern.lock scripts/setup_venv.sh
	@scripts/setup_venv.sh --modern $(VENV_MODERN) requirements-modern.lock

test: setup setup-modern ## run the test suite (tests/)
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# ---- pipeline --------------------------------------------------------------------------
demo: ## whole pipeline offline on Debian's Spanish text, tiny model, CPU, minutes
	@echo "make demo: not yet"; exit 1
corpus: ## DATA_DIR/corpus from OpenSubtitles (or CORPUS=), first TRAIN_SIZE lines
	@echo "make corpus: not yet"; exit 1
vocab: ## DATA_DIR/vocab.txt (VOCAB=mbert|train|path)
	@echo "make vocab: not yet"; exit 1
hparams: ## DATA_DIR/hparams.json from PRESET + HPARAMS_OVERRIDES, type-checked
	@echo "make hparams: not yet"; exit 1
pretrain-data: ## DATA_DIR/pretrain_tfrecords with ELECTRA_DIR's builder
	@echo "make pretrain-data: not yet"; exit 1
pretrain: ## train into DATA_DIR/models/MODEL_NAME (resumes from the latest checkpoint)
	@echo "make pretrain: not yet"; exit 1
convert: ## Hugging Face discriminator + generator under DATA_DIR/models/MODEL_NAME/hf
	@echo "make convert: not yet"; exit 1
verify: ## TF vs PyTorch logits on real sentences (2.8.0 and current transformers)
	@echo "make verify: not yet"; exit 1
predict: ## discriminator's table for SENTENCE
	@echo "make predict: not yet"; exit 1
tensorboard: ## TensorBoard on DATA_DIR/models/MODEL_NAME
	$(VENV)/bin/tensorboard --logdir "$(DATA_DIR)/models/$(MODEL_NAME)"
all: ## the full recipe: corpus vocab hparams pretrain-data pretrain convert verify
	@echo "make all: not yet"; exit 1

# ---- benchmarks ------------------------------------------------------------------------
bench-data: setup ## dataset builder speed vs the plain-Python path (MB/s, ratio, peak RSS)
	@echo "make bench-data: not yet"; exit 1
bench-train: setup ## training steps/s and time to first step (small and tiny)
	@echo "make bench-train: not yet"; exit 1

# ---- docker (V100 host) ----------------------------------------------------------------
DOCKER_IMAGE ?= electra-spanish:tf1.15.5-gpu
docker-build: ## build docker/Dockerfile (CUDA 10.0, cuDNN 7, TF 1.15.5, the lock file)
	docker build -f docker/Dockerfile -t $(DOCKER_IMAGE) .
docker-run: ## run `make TARGET` in the image with the GPU and DATA_DIR mounted
	docker run --rm $(if $(shell [ -t 0 ] && echo tty),-it,) --gpus all \
	  -v "$(abspath $(DATA_DIR))":/workspace/data $(DOCKER_IMAGE) \
	  make $(TARGET) DATA_DIR=/workspace/data MODEL_NAME='$(MODEL_NAME)' PRESET='$(PRESET)' \
	    HPARAMS_OVERRIDES='$(HPARAMS_OVERRIDES)' TRAIN_SIZE='$(TRAIN_SIZE)' VOCAB='$(VOCAB)' \
	    VOCAB_SIZE='$(VOCAB_SIZE)' NUM_PROCESSES='$(NUM_PROCESSES)' SENTENCE='$(SENTENCE)'
