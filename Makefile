# orthanc-remote: the single entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
SITE      ?= lab
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

# The Debian release of the lab and molecule containers: bookworm (12) or trixie (13).
SUITE     ?= bookworm
export ORTHANC_REMOTE_SUITE := $(SUITE)
# The base image for the lab and molecule containers (scripts/image-tag.sh).
export ORTHANC_REMOTE_IMAGE_RESOLVED := $(shell ORTHANC_REMOTE_SUITE=$(SUITE) scripts/image-tag.sh)
export ANSIBLE_HOME := $(CURDIR)/.ansible
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup docker image venv lint unit molecule test lab lab-down clean verify \
	check apply handouts rotate-password renew-certificates status diagnose bench

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

docker: ## Ensure a Docker engine answers (installs Debian's docker.io if missing)
	@scripts/ensure-docker.sh

image: docker ## Build the Debian base image from Debian's mirror (cached by tag)
	@scripts/build-image.sh

venv: $(VENV)/.installed ## Create the virtualenv with the pinned tooling

$(VENV)/.installed: requirements.txt
	@scripts/ensure-python.sh $(PYTHON)
	@echo "==> Creating $(VENV) from requirements.txt"
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(BIN)/ansible-galaxy collection install -r requirements.yml >/dev/null
	@touch $@

setup: image venv ## Everything `lab` and `test` need

lint: venv ## yamllint and ansible-lint (production profile, offline)
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint

unit: venv ## pytest for the Python filter plugins
	$(BIN)/pytest tests

molecule: setup ## molecule test for every scenario (SCENARIOS="a b" to choose)
	@scripts/run-molecule.sh $(SCENARIOS)

test: setup ## Lint, unit tests and every molecule scenario, with a summary
	@scripts/test.sh $(SCENARIOS)

lab: setup ## Provision the lab containers with site.yml and verify them
	@scripts/lab.sh up $(SITE)

lab-down: venv ## Remove the lab containers and network
	@scripts/lab.sh down $(SITE)

bench: venv ## Ingest benchmark against the running lab (not a test); rewrites docs/benchmarks.md
	$(BIN)/python scripts/bench.py

# Day-2 operations on one site (README, "Day-2 operations"): SITE=<dir under inventories/>.
# Add ASK_VAULT=--ask-vault-pass when the inventory has a vault.
# INVENTORY=<path> points at an inventory outside inventories/ (the validation scenario's tests do).
INVENTORY ?= inventories/$(SITE)
ANSIBLE_PLAYBOOK = $(BIN)/ansible-playbook -i $(INVENTORY) $(ASK_VAULT)

check: venv ## Check an inventory without touching a host (SITE=...)
	$(ANSIBLE_PLAYBOOK) playbooks/validate.yml

apply: venv ## Apply the inventory to the site (after adding a modality, a radiologist...)
	$(ANSIBLE_PLAYBOOK) site.yml

handouts: venv ## Rewrite the hand-outs under inventories/$(SITE)/artifacts/handouts
	$(ANSIBLE_PLAYBOOK) playbooks/handouts.yml

rotate-password: venv ## Rotate one Orthanc user's password and apply it (USER=...)
	$(ANSIBLE_PLAYBOOK) playbooks/rotate-password.yml -e user=$(USER)

renew-certificates: venv ## Reissue the HTTPS and DICOM certificates now
	$(ANSIBLE_PLAYBOOK) playbooks/renew-certificates.yml

status: venv ## Who may connect from where, certificate expiries, last checks
	$(ANSIBLE_PLAYBOOK) playbooks/status.yml

verify: venv ## Prove the site works: server self-test, then every test client's path (one table)
	$(ANSIBLE_PLAYBOOK) playbooks/verify.yml

diagnose: venv ## Troubleshoot the site, read-only: PASS/WARN/FAIL with cause and fix (MODALITY=... narrows)
	$(ANSIBLE_PLAYBOOK) playbooks/diagnose.yml $(if $(MODALITY),-e modality=$(MODALITY))

clean: lab-down ## Remove the lab, the virtualenv and local caches (not the image)
	rm -rf $(VENV) .ansible .pytest_cache
