# scx-slo build. `make` builds a static binary; `make test` is what CI runs.
GO        ?= go
VERSION   := $(shell cat VERSION)
REVISION  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH    := $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
PKG       := github.com/prometheus/common/version
LDFLAGS   := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).Branch=$(BRANCH) -X $(PKG).BuildUser=scx-slo -X $(PKG).BuildDate=$(shell date -u +%Y%m%d)
# Static: the same binary runs on the host and inside the lab VM's initramfs.
export CGO_ENABLED = 0

.PHONY: all build generate test test-short fuzz bench lint clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o scx-slo ./cmd/scx-slo
	$(GO) build -ldflags '$(LDFLAGS)' -o scx-slo-shed ./cmd/scx-slo-shed
	$(GO) build -ldflags '$(LDFLAGS)' -o scx-slo-lab ./cmd/scx-slo-lab

# BPF objects and bindings (bpf2go, needs clang-19), then dashboards and
# alert rules, then the SLOPolicy deepcopy code and CRD (controller-gen), then
# the chart's copies of the dashboards, rules and VERSION (deploy/helm).
# Generated files are committed.
generate:
	$(GO) generate ./bpf/... ./dashboards/... ./alerts/... ./api/... ./deploy/helm/...

# Everything, as root: real BPF on this host, the sched_ext kernel under
# qemu, promtool, loopback HTTP.
test:
	$(GO) vet ./...
	# -p 1: one package at a time. The VM tests of several packages would
	# otherwise share the two cores, and their guests (single-threaded TCG)
	# run slower than the bounds in their assertions assume.
	$(GO) test -p 1 -count=1 -timeout 45m ./...
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 20s ./internal/sloconfig
	$(GO) test -run '^$$' -fuzz FuzzCgroupNames -fuzztime 20s ./collector

# Unit tests only (no root, no VM).
test-short:
	$(GO) test -short -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./bench/...

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

clean:
	rm -f scx-slo scx-slo-shed scx-slo-lab
