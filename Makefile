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
	@echo "  CORPUS=path                   .txt/.gz file or directory instead of OpenSubtitles (several: a:b)"
	@echo "  DOWNLOAD_BYTES=N              download only the first N bytes of OpenSubtitles (a slice)"
	@echo "  TRAIN_SIZE=$(TRAIN_SIZE)          corpus lines kept"
	@echo "  VOCAB=$(VOCAB)                   mbert | train | path/to/vocab.txt"
	@echo "  VOCAB_SIZE=$(VOCAB_SIZE)              size of a trained vocab (VOCAB=train)"
	@echo "  NUM_PROCESSES=$(NUM_PROCESSES)             dataset builder processes"
	@echo "  ELECTRA_DIR=$(ELECTRA_DIR)  builder/trainer implementation (an upstream checkout works)"
	@echo "  SENTENCE='$(SENTENCE)'  sentence for make predict"
	@echo "  PYTHON37=path                 Python 3.7 interpreter for make setup"
	@echo "make demo runs all + predict in DATA_DIR/demo with VOCAB=train VOCAB_SIZE=$(DEMO_VOCAB_SIZE) PRESET=demo-cpu"
	@echo "on CORPUS= if given, else Debian's fortunes-es + debian-reference-es, else an OpenSubtitles slice."

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
# Each stage runs under wrapper/stages.py, which skips it when DATA_DIR/.stages/STAGE.done
# matches the fingerprint of its inputs (files by content, variables by value): an interrupted
# `make all` resumes at the stage that did not finish, and a changed corpus, vocab or hparams
# redoes exactly what depends on it. A single target runs only its own stage.
ABS_DATA_DIR  = $(abspath $(DATA_DIR))
ABS_PY        = $(abspath $(PY))
MODEL_DIR     = $(DATA_DIR)/models/$(MODEL_NAME)
HF_DIR        = $(MODEL_DIR)/hf
STAGE         = $(PY) -m wrapper.stages
# One run at a time per data directory (its stage outputs) and per model directory
# (wrapper/locking.py): a second run is refused with one line naming the running one; the
# lock of a killed run is released by the kernel, so it never blocks the next run.
LOCK_DATA     = $(PY) -m wrapper.locking --data-dir "$(DATA_DIR)" --program $@ --
LOCK_MODEL    = $(PY) -m wrapper.locking --data-dir "$(DATA_DIR)" --model-name "$(MODEL_NAME)" \
                --program $@ --
PIPELINE      := corpus vocab hparams pretrain-data pretrain convert verify
# Free text reaches the recipes through the environment: any quote in it is safe there.
export HPARAMS_OVERRIDES SENTENCE
# Our builder takes --seed (reproducible shards); an upstream checkout has no such flag.
BUILDER_SEED  = $(if $(filter $(abspath third_party/electra),$(abspath $(ELECTRA_DIR))),--seed 1234)
DOWNLOAD_BYTES ?=
DEMO_DATA_DIR ?= $(DATA_DIR)/demo
DEMO_VOCAB_SIZE ?= 4000
DEBIAN_FORTUNES := /usr/share/games/fortunes/es
DEBIAN_REFERENCE := /usr/share/debian-reference/debian-reference.es.txt.gz
# make demo's text: CORPUS= when given, else Debian's Spanish text, else an OpenSubtitles slice.
EMPTY :=
SPACE := $(EMPTY) $(EMPTY)
DEMO_CORPUS = $(or $(CORPUS),$(subst $(SPACE),:,$(strip $(wildcard $(DEBIAN_FORTUNES) $(DEBIAN_REFERENCE)))))
DEMO_DOWNLOAD_BYTES = $(if $(DEMO_CORPUS),,4000000)
DEMO_TRAIN_SIZE = $(if $(filter command line environment,$(origin TRAIN_SIZE)),$(TRAIN_SIZE),100000)

demo: setup ## whole pipeline offline on Debian's Spanish text, tiny model, CPU, minutes
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory all predict DATA_DIR="$(DEMO_DATA_DIR)" CORPUS="$(DEMO_CORPUS)" \
	  DOWNLOAD_BYTES="$(DEMO_DOWNLOAD_BYTES)" TRAIN_SIZE="$(DEMO_TRAIN_SIZE)" VOCAB=train VOCAB_SIZE="$(DEMO_VOCAB_SIZE)" \
	  PRESET=demo-cpu TF_CPP_MIN_LOG_LEVEL=3 && \
	echo "Hugging Face model (ElectraForPreTraining): $(abspath $(DEMO_DATA_DIR))/models/$(MODEL_NAME)/hf/discriminator" && \
	echo "make demo: done in $$(( $$(date +%s) - start )) s"

corpus: setup ## DATA_DIR/corpus from OpenSubtitles (or CORPUS=), first TRAIN_SIZE lines
	@$(LOCK_DATA) $(STAGE) corpus --data-dir "$(DATA_DIR)" --input-list "$(CORPUS)" \
	  --var CORPUS="$(CORPUS)" --var TRAIN_SIZE="$(TRAIN_SIZE)" --var NUM_PROCESSES="$(NUM_PROCESSES)" \
	  --var DOWNLOAD_BYTES="$(DOWNLOAD_BYTES)" --output "$(DATA_DIR)/corpus" -- \
	  $(PY) -m wrapper.corpus --data-dir "$(DATA_DIR)" --corpus "$(CORPUS)" --train-size "$(TRAIN_SIZE)" \
	  --num-files "$(NUM_PROCESSES)" --download-bytes "$(DOWNLOAD_BYTES)"

vocab: setup ## DATA_DIR/vocab.txt (VOCAB=mbert|train|path)
	@$(LOCK_DATA) $(STAGE) vocab --data-dir "$(DATA_DIR)" $(if $(filter train,$(VOCAB)),--input "$(DATA_DIR)/corpus") \
	  $(if $(filter-out mbert train,$(VOCAB)),--input "$(VOCAB)") \
	  --var VOCAB="$(VOCAB)" --var VOCAB_SIZE="$(if $(filter train,$(VOCAB)),$(VOCAB_SIZE))" \
	  --output "$(DATA_DIR)/vocab.txt" -- \
	  $(PY) -m wrapper.vocab --data-dir "$(DATA_DIR)" --vocab "$(VOCAB)" --vocab-size "$(VOCAB_SIZE)"

hparams: setup ## DATA_DIR/hparams.json from PRESET + HPARAMS_OVERRIDES, type-checked
	@$(LOCK_DATA) $(STAGE) hparams --data-dir "$(DATA_DIR)" --input "$(DATA_DIR)/vocab.txt" \
	  $(if $(wildcard hparams/$(PRESET).json),--input "hparams/$(PRESET).json",--input-list "$(PRESET)") \
	  --var PRESET="$(PRESET)" --var HPARAMS_OVERRIDES="$$HPARAMS_OVERRIDES" --var MODEL_NAME="$(MODEL_NAME)" \
	  --output "$(DATA_DIR)/hparams.json" -- \
	  $(PY) -m wrapper.hparams --data-dir "$(DATA_DIR)" --preset "$(PRESET)" \
	  --overrides "$$HPARAMS_OVERRIDES" --model-name "$(MODEL_NAME)"

pretrain-data: setup ## DATA_DIR/pretrain_tfrecords with ELECTRA_DIR's builder
	@flags=$$($(PY) -m wrapper.hparams --data-dir "$(DATA_DIR)" --builder-flags) && \
	$(LOCK_DATA) $(STAGE) pretrain-data --data-dir "$(DATA_DIR)" --input "$(DATA_DIR)/corpus" \
	  --input "$(DATA_DIR)/vocab.txt" --var builder_flags="$$flags" \
	  --var NUM_PROCESSES="$(NUM_PROCESSES)" --var ELECTRA_DIR="$(abspath $(ELECTRA_DIR))" \
	  --output "$(DATA_DIR)/pretrain_tfrecords" -- \
	  $(PY) "$(ELECTRA_DIR)/build_pretraining_dataset.py" --corpus-dir "$(DATA_DIR)/corpus" \
	  --vocab-file "$(DATA_DIR)/vocab.txt" --output-dir "$(DATA_DIR)/pretrain_tfrecords" \
	  $$flags --num-processes "$(NUM_PROCESSES)" $(BUILDER_SEED)

pretrain: setup ## train into DATA_DIR/models/MODEL_NAME (resumes from the latest checkpoint)
	@$(LOCK_MODEL) $(STAGE) pretrain-$(MODEL_NAME) --data-dir "$(DATA_DIR)" --input "$(DATA_DIR)/pretrain_tfrecords" \
	  --input "$(DATA_DIR)/vocab.txt" --input "$(DATA_DIR)/hparams.json" \
	  --var MODEL_NAME="$(MODEL_NAME)" --var ELECTRA_DIR="$(abspath $(ELECTRA_DIR))" \
	  --keeps "$(MODEL_DIR)" --may-change num_train_steps --may-change save_checkpoints_steps \
	  --may-change keep_checkpoint_max --may-change iterations_per_loop \
	  --output "$(MODEL_DIR)/checkpoint" -- \
	  bash -c 'cd "$(ELECTRA_DIR)" && exec "$(ABS_PY)" run_pretraining.py --data-dir "$(ABS_DATA_DIR)" \
	  --model-name "$(MODEL_NAME)" --hparams "$(ABS_DATA_DIR)/hparams.json"'

convert: setup ## Hugging Face discriminator + generator under DATA_DIR/models/MODEL_NAME/hf
	@$(LOCK_MODEL) $(STAGE) convert-$(MODEL_NAME) --data-dir "$(DATA_DIR)" --input "$(MODEL_DIR)/checkpoint" \
	  --input "$(DATA_DIR)/vocab.txt" --input "$(DATA_DIR)/hparams.json" \
	  --output "$(HF_DIR)/discriminator" --output "$(HF_DIR)/generator" -- \
	  $(PY) -m wrapper.export --data-dir "$(DATA_DIR)" --model-name "$(MODEL_NAME)"

verify: setup setup-modern ## TF vs PyTorch logits on real sentences (2.8.0 and current transformers)
	@$(STAGE) verify-$(MODEL_NAME) --data-dir "$(DATA_DIR)" --input "$(MODEL_DIR)/checkpoint" \
	  --input "$(HF_DIR)" -- \
	  $(PY) -m wrapper.verify --data-dir "$(DATA_DIR)" --model-name "$(MODEL_NAME)"

predict: setup ## discriminator's table for SENTENCE
	@$(PY) -m wrapper.predict --model-dir "$(HF_DIR)/discriminator" "$$SENTENCE"

tensorboard: setup ## TensorBoard on DATA_DIR/models/MODEL_NAME
	$(VENV)/bin/tensorboard --logdir "$(MODEL_DIR)"

all: setup ## the full recipe: corpus vocab hparams pretrain-data pretrain convert verify
	@for stage in $(PIPELINE); do \
	  echo "== make $$stage"; $(MAKE) --no-print-directory $$stage || exit $$?; done

# ---- benchmarks ------------------------------------------------------------------------
bench-data: setup ## dataset builder speed vs the plain-Python path (MB/s, ratio, peak RSS)
	$(PY) scripts/bench_data.py --processes $(NUM_PROCESSES)
bench-train: setup ## training steps/s and time to first step (small and tiny)
	$(PY) scripts/bench_train.py

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
