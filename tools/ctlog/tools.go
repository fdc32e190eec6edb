//go:build tools

// Package tools pins the Certificate Transparency log that certctl's tests
// run (internal/pkitest.StartCTLog builds it from this module): TesseraCT's
// POSIX static-ct-api log. It is a separate module so that the main module's
// `go test ./...` and go.mod ignore it; go.sum pins every hash.
package tools

import _ "github.com/transparency-dev/tesseract/cmd/tesseract/posix"
