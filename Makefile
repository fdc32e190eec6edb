# certctl: `make test` installs what the tests need (as root, via apt-get) and runs every test with -race.
GO ?= go
GOTESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: test deps build vet fuzz bench bench-api bench-hsm bench-ocsp bench-revocation bench-scan bench-transport bench-ct cover

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

# keys/pkcs11 Signer vs raw miekg/pkcs11 on SoftHSM, and issuance with an HSM key (bench/RESULTS.md, issue 5).
bench-hsm: deps
	$(GO) test -run '^$$' -bench HSM -benchtime 2s -count 6 ./bench/

# certctl ocsp serve vs cfssl ocspserve v1.6.5 (PostgreSQL-backed and file-backed), 10,000 certificates.
# COUNT, REVOKE_EVERY, REQUESTS, CONCURRENCY and ROUNDS are passed through the environment.
bench-ocsp: deps
	bash bench/ocsp-vs-cfssl.sh

# Revoke call -> OCSP (serve and a standalone ocsp serve) and CRL show it; COUNT, POLL, TIMEOUT from the environment.
bench-revocation: deps
	bash bench/revocation-latency.sh

# certctl scan vs testssl.sh and sslscan on local openssl s_server endpoints, plus a /24 (bench/RESULTS.md, issue 7).
bench-scan:
	bash bench/scan-vs-testssl.sh

# transport vs plain crypto/tls with identical keys (paired: each iteration does one of each), renewal cost, memory per identity.
bench-transport: deps
	$(GO) test -run '^$$' -bench 'Paired|Renewal' -benchtime 3s -count 6 ./bench/ | tee bench/last-transport.txt
	$(GO) test -run '^$$' -bench IdentityMemory -benchtime 200x -count 6 ./bench/ | tee -a bench/last-transport.txt

# Issuance with CT on (two local TesseraCT logs) vs off.
bench-ct: deps
	$(GO) test -run '^$$' -bench IssueCT -benchtime 3s -count 3 ./bench/ | tee bench/last-ct.txt

cover: deps
	$(GO) test -count=1 -coverprofile=cover.out ./ca/... ./issuance/... ./certdb/... ./keys/...
	$(GO) tool cover -func=cover.out | tail -n 1
