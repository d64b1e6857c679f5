# Two entry points: `make run` and `make test`. Everything else is plumbing.
SHELL := /bin/bash
export PYTHONSAFEPATH := 1
PY := .venv/bin/python
PIP := .venv/bin/pip
DEBIAN_PACKAGES := zookeeper haproxy chromium bind9-dnsutils

.PHONY: run test venv deps debs unit integration e2e bench clean

.venv/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q -U pip setuptools wheel
	$(PIP) install -q -e '.[test]'
	touch $@

venv: .venv/.installed

run: venv
	.venv/bin/meseta up

# Debian packages the suite drives for real. Installed only when missing, so a
# developer's machine that has them is not touched.
debs:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: venv debs
	$(PY) -m pytest -q tests/unit tests/integration tests/e2e

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv
	$(PY) -m pytest -q tests/integration

bench: venv debs
	@for p in dnsperf dnsmasq; do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(PY) bench/run.py

clean:
	rm -rf .venv build *.egg-info
