# Debian package (included by the top Makefile).
#
#   make deb       out/lbd_$(DEB_VERSION)_amd64.deb (packaging/build-deb.sh)
#   make deb-lint  lintian on it (every remaining tag is explained in README.md)
#   make deb-test  install it into a fresh debootstrapped Debian 12 root and
#                  run lbd there in a namespace lab (e2e TestDebPackage)

# A Debian version starts with a digit (packaging/deb-version.sh).
DEB_VERSION ?= $(shell packaging/deb-version.sh)
DEB := $(OUT)/lbd_$(DEB_VERSION)_amd64.deb
DEB_DEBS := dpkg-dev lintian debootstrap curl

.PHONY: deb deb-lint deb-test

deb: $(DEB)

# The package holds out/lbd itself: the static CGO_ENABLED=0 binary the
# image and the tests run (lintian's statically-linked-binary is overridden,
# see packaging/debian/lintian-overrides).
$(DEB): $(LBD) $(wildcard packaging/debian/*) packaging/build-deb.sh rootfs/etc/systemd/system/lbd.service rootfs/usr/lib/sysusers.d/lbd.conf
	@./scripts/apt-ensure dpkg-dev
	packaging/build-deb.sh $(LBD) $(OUT) $(DEB_VERSION)

deb-lint: $(DEB)
	@./scripts/apt-ensure lintian
	lintian --info --display-info --pedantic $(DEB)

deb-test: $(DEB)
	@./scripts/apt-ensure $(DEB_DEBS)
	LBD_DEB=$(abspath $(DEB)) $(GO) test ./e2e -run 'TestDebPackage' -count=1 -v -timeout 15m
