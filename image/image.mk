# Bootable appliance image (included by the top Makefile).
#
#   make image       out/lbd.img (raw GPT disk) + out/lbd.qcow2
#   make boot        boot out/lbd.img in QEMU, NICs in a namespace lab
#   make image-test  build, boot under QEMU with test configs, assert from outside
#
# The root tree comes from mkosi (out/mkosi/root); image/mkimage.sh adds
# rootfs/ and the lbd binary and assembles the disk without mounting anything.

IMAGE_DEBS := mkosi debootstrap systemd-container squashfs-tools mtools dosfstools \
	fdisk e2fsprogs systemd-boot-efi binutils qemu-utils syslinux syslinux-common
BOOT_DEBS  := qemu-system-x86 ovmf iproute2 dnsmasq-base python3 curl socat bc
MKOSI_ROOT  := $(OUT)/mkosi/root
MKOSI_STAMP := $(OUT)/mkosi/root.stamp

# The real out/lbd once cmd/lbd has Go files; a placeholder script before
# that, or when asked with LBD_PLACEHOLDER=1.
ifeq ($(LBD_PLACEHOLDER)$(wildcard cmd/lbd/*.go),)
LBD_PLACEHOLDER := 1
endif
IMAGE_LBD := $(if $(filter 1,$(LBD_PLACEHOLDER)),image/lbd-placeholder,$(LBD))
# Which binary the image holds: switching between the placeholder and the
# real one rebuilds the image even when the timestamps would not.
IMAGE_LBD_SRC := $(OUT)/lbd.img.source

.PHONY: image image-deps image-tree boot image-test boot-bench image-clean _image_force

image: $(OUT)/lbd.img

image-deps:
	@./scripts/apt-ensure $(IMAGE_DEBS)

image-tree: $(MKOSI_STAMP)

$(MKOSI_STAMP): mkosi.conf mkosi.postinst mkosi.finalize | image-deps
	@mkdir -p $(OUT)/mkosi
	@rm -f $@
	@start=$$(date +%s); \
	mkosi --force --workspace-dir=$(abspath $(OUT)/mkosi) build >$(OUT)/mkosi/build.log 2>&1 \
		|| { tail -40 $(OUT)/mkosi/build.log; echo "mkosi failed: see $(OUT)/mkosi/build.log"; exit 1; }; \
	echo "mkosi: root tree built in $$(( $$(date +%s) - start )) s ($$(du -sh $(MKOSI_ROOT) | cut -f1))"
	@touch $@

$(IMAGE_LBD_SRC): _image_force
	@mkdir -p $(@D)
	@echo '$(IMAGE_LBD)' | cmp -s - $@ || echo '$(IMAGE_LBD)' >$@

_image_force:

$(OUT)/lbd.img: $(MKOSI_STAMP) image/mkimage.sh image/image.mk $(IMAGE_LBD) $(IMAGE_LBD_SRC) \
		$(shell find rootfs 2>/dev/null) | image-deps
	@$(if $(filter 1,$(LBD_PLACEHOLDER)),echo "WARNING: image with the placeholder lbd (cmd/lbd has no Go files or LBD_PLACEHOLDER=1)")
	image/mkimage.sh $(MKOSI_ROOT) $(IMAGE_LBD) $(OUT) $(VERSION)

boot: $(OUT)/lbd.img
	@./scripts/apt-ensure $(BOOT_DEBS)
	image/boot.sh $(OUT)/lbd.img

image-test: $(OUT)/lbd.img
	@./scripts/apt-ensure $(BOOT_DEBS)
	image/image-test.sh $(OUT)/lbd.img

# Boot to READY under QEMU, N times (BENCH_N, 3), median; BENCH_REPORT=1
# adds systemd-analyze's critical chain and blame of each boot.
boot-bench: $(OUT)/lbd.img
	@./scripts/apt-ensure $(BOOT_DEBS)
	image/boot-bench.sh $(OUT)/lbd.img $(or $(BENCH_N),3)

image-clean:
	rm -rf $(OUT)/mkosi $(OUT)/image $(OUT)/image-test $(OUT)/lbd.img* $(OUT)/lbd.qcow2 $(OUT)/lbd.vmlinuz $(OUT)/lbd.initrd $(OUT)/lbd-update.bundle $(OUT)/boot-bench
