# Sealgate: `make run` starts it locally, `make test` runs the whole suite, `make test-fast`
# the tests that start no real peer.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test test-fast bench bench-relay soak docs lint messages clean system-packages

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || scripts/debian-packages python3-venv
	$(PYTHON) -c 'import sys; sys.exit("Sealgate needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(BIN)/sealgate serve -c config.example.toml

# libatomic1: Playwright's driver (a Node.js binary inside its wheel) links it, and a fresh
# Debian 12 does not have it. Node.js runs the tests' OpenID provider (tests/support/oidc/):
# Debian's nodejs and npm unless `node` and `npm` are there already (NodeSource's nodejs brings
# its own npm and conflicts with Debian's, so asking dpkg for the package npm would try to
# replace it).
system-packages:
	@scripts/debian-packages postfix swaks libnet-ssleay-perl postgresql unbound libmail-dkim-perl chromium \
		libatomic1 samba-ad-dc samba-ad-provision slapd ldap-utils iproute2
	@command -v node >/dev/null && command -v npm >/dev/null || scripts/debian-packages nodejs npm

test: $(STAMP) system-packages
	$(BIN)/pytest

# Without the tests that start real peers (PostgreSQL, unbound, Postfix, chromium, ...).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not peers"

# Sealgate against a real Postfix relay hop (root, Postfix; about 4 minutes):
# `make bench HOP="--big --burst 500 --profile /tmp/prof"` adds the rest (bench/README.md).
bench: $(STAMP)
	@scripts/debian-packages postfix
	$(BIN)/python bench/hop.py $(HOP)

# Sealgate against a minimal aiosmtpd relay (no root, no Postfix needed).
bench-relay: $(STAMP)
	$(BIN)/python bench/relay.py

# Soak test (root, Postfix, a loop mount; ten minutes): `make soak SOAK=--quick` tries it.
soak: $(STAMP) system-packages
	$(BIN)/python bench/soak.py $(SOAK)

docs: $(STAMP)
	$(BIN)/sealgate config-reference --format markdown > docs/configuration.md
	$(BIN)/sealgate config-reference --format toml > config.example.toml

# The words: extract the msgids into gateway/locale/sealgate.pot and update every catalogue
# (docs/translating.md). A new language: `make messages NEW=de`.
LOCALE := gateway/locale
messages: $(STAMP)
	$(BIN)/pybabel extract --mapping-file=babel.cfg --add-comments=Translators: \
		--sort-by-file --width=100 --project=Sealgate --version=0 \
		--header-comment="# The words of Sealgate; the msgids are the English text (docs/translating.md)." \
		--output-file=$(LOCALE)/sealgate.pot .
	$(if $(NEW),$(BIN)/pybabel init --input-file=$(LOCALE)/sealgate.pot --output-dir=$(LOCALE) \
		--domain=sealgate --width=100 --locale=$(NEW))
	$(BIN)/pybabel update --input-file=$(LOCALE)/sealgate.pot --output-dir=$(LOCALE) \
		--domain=sealgate --width=100 --ignore-obsolete --update-header-comment

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache
