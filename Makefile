# certctl: `make test` installs what the tests need (as root, via apt-get) and runs every test with -race.
GO ?= go
GOTESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: test deps build vet fuzz bench bench-api cover

test: deps vet
	$(GO) test $(GOTESTFLAGS) ./...

deps:
	@bash scripts/install-test-deps.sh

build:
	$(GO) build -o bin/certctl ./cmd/certctl

vet:
	$(GO) vet ./...

# Short fuzzing session over every fuzz target (the seed corpora also run in `make test`).
fuzz:
	@bash scripts/fuzz.sh 30s

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 6 ./bench/ | tee bench/last.txt

# certctl serve vs cfssl serve v1.6.5 over HTTP, both on PostgreSQL (bench/RESULTS.md).
# COUNT, WARMUP, CONCURRENCY, ROUNDS and PROFILE=1 are passed through the environment.
bench-api: deps
	bash bench/api-vs-cfssl.sh

cover: deps
	$(GO) test -count=1 -coverprofile=cover.out ./ca/... ./issuance/... ./certdb/... ./keys/...
	$(GO) tool cover -func=cover.out | tail -n 1
