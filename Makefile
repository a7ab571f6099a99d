# Build, test and lint coopr-gslb. `make` builds ./coopr-gslb.
GO          ?= go
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)

.PHONY: all build test lint fmt-check vet staticcheck promtool docker clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o coopr-gslb .

# The README's test command.
test:
	$(GO) test -race ./...

lint: fmt-check vet staticcheck promtool

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

promtool:
	promtool check rules deploy/prometheus-alerts.yaml

docker:
	docker build --build-arg VERSION=$(VERSION) -t coopr-gslb:$(VERSION) .

clean:
	rm -f coopr-gslb
	rm -rf dist
