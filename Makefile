# ELECTRA-small Spanish, reproduced: one target per pipeline stage.
# `make help` lists targets and variables. Settings, paths and pins have one home each:
# wrapper/settings.py (settings.mk: the variables' defaults), requirements.lock (pins),
# wrapper/paths.py (data layout), third_party/electra/configure_pretraining.py (hparam names
# and defaults).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# ---- variables (documented in `make help`) -------------------------------------------
# Their defaults, meanings and lists: settings.mk, generated from wrapper/settings.py.
include settings.mk

# What the user gave (command line or environment) is taken literally: Make would otherwise
# expand a `$(...)` inside it before anything else sees it.
literal = $(if $(filter command line environment,$(origin $(1))),$(eval override $(1) := $$(value $(1))))
$(foreach var,$(USER_VARS),$(call literal,$(var)))
# The ones the user gave (docker-run forwards those: the image's make has the same defaults).
export PIPELINE_GIVEN := $(foreach var,$(PIPELINE_VARS),$(if $(filter override,$(origin $(var))),$(var)))

VENV        := .venv
VENV_MODERN := .venv-modern
PY          := $(VENV)/bin/python
PY_MODERN   := $(VENV_MODERN)/bin/python
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup setup-modern test test-all demo corpus vocab hparams pretrain-data pretrain \
        convert verify predict evaluate conformance tensorboard all docker-build docker-run \
        demo-gpu \
        bench-data bench-train bench-formats

help: ## this list
	@echo "ELECTRA-small Spanish pipeline. Targets:"
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables (make TARGET VAR=value):"
	@awk -F '\t' '/^#: /{v = ENVIRON[substr($$1, 4)]; if (v == "") v = $$2; \
	  printf "  %-30s %s\n", substr($$1, 4) "=" v, $$3}' settings.mk
	@echo "make demo runs all + predict in DATA_DIR/demo with VOCAB=train VOCAB_SIZE=$$DEMO_VOCAB_SIZE PRESET=demo-cpu"
	@echo "on CORPUS= if given, else Debian's fortunes-es + debian-reference-es, else an OpenSubtitles slice,"
	@echo "then make evaluate TASK=fortunes-es BASELINE=random SEEDS=$$DEMO_SEEDS."
	@echo "make demo-gpu: CORPUS=debian-es VOCAB=train VOCAB_SIZE=$$DEMO_GPU_VOCAB_SIZE PRESET=demo-gpu BACKEND=torch in DATA_DIR/demo-gpu"
	@echo "on one CUDA GPU (DEMO_GPU_SMOKE=1: the same path on the CPU, tiny model), then the replaced-word"
	@echo "check and make evaluate TASK=fortunes-es BASELINE=random SEEDS=5."

# ---- environments ----------------------------------------------------------------------
setup: $(VENV)/.installed ## create .venv (Python 3.7, TF 1.15) from requirements.lock
$(VENV)/.installed: requirements.lock scripts/setup_venv.sh
	@scripts/setup_venv.sh $(VENV) requirements.lock

setup-modern: $(VENV_MODERN)/.installed ## create .venv-modern (Python >= 3.10, current transformers)
$(VENV_MODERN)/.installed: requirements-modern.lock scripts/setup_venv.sh
	@scripts/setup_venv.sh --modern $(VENV_MODERN) requirements-modern.lock

# The tests run make with their own settings: none of this make's leaks into them. Tests
# marked `slow` (tests/conftest.py says which) run under test-all only.
TEST_COMMAND := env $(foreach var,$(USER_VARS),-u $(var)) $(PY) -m pytest -q --durations=15 tests
test: setup setup-modern ## the fast tests (minutes): every module, no long training
	$(TEST_COMMAND) -m "not slow" $(PYTEST_ARGS)

test-all: setup setup-modern ## every test, the slow ones too (what .ci/run runs)
	$(TEST_COMMAND) $(PYTEST_ARGS)

# ---- pipeline --------------------------------------------------------------------------
# Each stage target is one line: wrapper/pipeline.py's table says what the stage reads, writes
# and runs, and its runner takes the stage's lock (wrapper/locking.py: one run at a time per
# data directory and per model directory; a killed run's lock is released by the kernel)
# and skips the stage when DATA_DIR/.stages/STAGE.done matches the fingerprint of its inputs
# (wrapper/stages.py): an interrupted `make all` resumes at the stage that did not finish,
# and a changed corpus, vocab or hparams redoes exactly what depends on it. `+`: under
# `make -n` the runner prints the commands instead of running them.
export $(USER_VARS)
RUN = +@$(PY) -m wrapper.pipeline
demo: setup setup-modern ## whole pipeline offline on Debian's Spanish text, tiny model, CPU, minutes
	$(RUN) demo
demo-gpu: setup setup-modern ## the evidence run: ELECTRA-small with BACKEND=torch on one GPU, then evaluate
	$(RUN) demo-gpu
corpus: setup ## DATA_DIR/corpus from OpenSubtitles (or CORPUS=), first TRAIN_SIZE lines
	$(RUN) corpus
vocab: setup ## DATA_DIR/vocab.txt (VOCAB=mbert|train|path)
	$(RUN) vocab
hparams: setup ## DATA_DIR/hparams.json from PRESET + HPARAMS_OVERRIDES, type-checked
	$(RUN) hparams
pretrain-data: setup ## DATA_DIR/pretrain_tfrecords with ELECTRA_DIR's builder
	$(RUN) pretrain-data
pretrain: setup ## train into DATA_DIR/models/MODEL_NAME (resumes from the latest checkpoint)
	$(RUN) pretrain
convert: setup ## Hugging Face discriminator + generator under DATA_DIR/models/MODEL_NAME/hf
	$(RUN) convert
verify: setup setup-modern ## TF vs PyTorch logits on real sentences (2.8.0 and current transformers)
	$(RUN) verify
predict: setup ## discriminator's table for SENTENCE
	$(RUN) predict
evaluate: setup setup-modern ## fine-tune and score the model on TASK (MODEL=, BASELINE=, SEEDS=)
	$(RUN) evaluate
conformance: setup setup-modern ## our builder/trainer/converter against the reference data
	$(RUN) conformance
tensorboard: setup ## TensorBoard on DATA_DIR/models/MODEL_NAME
	$(RUN) tensorboard
all: setup setup-modern ## the full recipe: corpus vocab hparams pretrain-data pretrain convert verify
	$(RUN) all

# ---- benchmarks ------------------------------------------------------------------------
bench-data: setup ## dataset builder speed vs the plain-Python path (MB/s, ratio, peak RSS)
	$(PY) scripts/bench_data.py --processes="$$NUM_PROCESSES"
bench-train: setup ## training steps/s and time to first step (small and tiny; BACKEND=torch: both trainers)
	$(PY) scripts/bench_train.py --backend=$(if $(filter torch,$(BACKEND)),both,tf1)
bench-formats: setup ## CRC-32C, checkpoint and TFRecord reading speed without TensorFlow
	$(PY) scripts/bench_formats.py

# ---- docker (V100 host) ----------------------------------------------------------------
docker-build: ## build docker/Dockerfile (V100: CUDA 10.0, TF 1.15.5), IMAGE=ngc|torch: Dockerfile.IMAGE
	@case "$$IMAGE" in ""|ngc|torch) ;; *) echo "docker-build: error: IMAGE=$$IMAGE is unknown; use IMAGE=ngc (Ampere hosts), IMAGE=torch (the PyTorch trainer) or no IMAGE (V100)" >&2; exit 2;; esac
	docker build -f docker/Dockerfile$(if $(IMAGE),.$(IMAGE)) --tag="$$DOCKER_IMAGE" .
# The host may have no .venv (everything runs in the image): any Python 3 runs the runner.
docker-run: ## run `make TARGET` in the image, DATA_DIR mounted (GPU=0: no --gpus, CPU-only host)
	+@$(if $(wildcard $(PY)),$(PY),python3) -m wrapper.pipeline --docker-run
