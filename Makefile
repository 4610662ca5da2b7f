# Shortcuts; every target is one plain command you can also type.
PYTHON ?= python
TORCH ?= torch==2.13.0

.PHONY: setup train test lint bench tensorboard clean

setup:
	$(PYTHON) -m pip install $(TORCH) -e ".[dev]"

train:
	$(PYTHON) -m rdcae.train $(ARGS)

test:
	$(PYTHON) -m pytest -q

lint:
	ruff check rdcae tests benchmarks

bench:
	$(PYTHON) -m rdcae.bench $(ARGS)

tensorboard:
	tensorboard --logdir outputs

clean:
	rm -rf outputs .cache
