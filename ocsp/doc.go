// Package ocsp is certctl's OCSP service (RFC 6960 with the RFC 5019
// profile): responses are signed ahead of time by a delegated responder
// and served by a responder that holds no key, so it can run next to a
// read-only database.
//
// # Signing
//
// A [Signer] keeps the delegated responder certificate (issuance profile
// "ocsp": id-kp-OCSPSigning, id-pkix-ocsp-nocheck), issued through the CA by
// an [IssueFunc] and rotated at two thirds of its life. Signing itself is
// [issuance.OCSPSigner.Sign], certctl's signing choke point; each response
// holds SHA-1 and SHA-256 CertIDs, the responder certificate and a
// ResponderID by key hash, and is verified and linted with zlint before it
// is stored.
//
// A [Presigner] writes the responses into certdb: [Presigner.SignOne] at
// issuance and revocation, [Presigner.Run] to keep every response fresh
// (one leader, elected through certdb.Locker, re-signs responses older than
// half their validity; every process re-signs announced revocations), and
// [Presigner.RefreshAll] for a one-shot refresh.
//
// # Serving
//
// A [Responder] is an http.Handler over a [Source]; [StoreSource] reads
// certdb through a bounded cache that follows revocation announcements
// ([StoreSource.Run]) and keeps answering from cache, until each
// response's nextUpdate, while the database is unreachable.
//
// Wiring, in short:
//
//	signer, _ := ocsp.NewSigner(ctx, issuerCert, issueFunc)
//	pre, _ := ocsp.NewPresigner(issuerCert, store, signer, ocsp.Config{})
//	go pre.Run(ctx)
//	src := ocsp.NewStoreSource(store)
//	go src.Run(ctx)
//	rs, _ := ocsp.NewResponder(issuerCert, src, "/ocsp")
//	handler := rs.Wrap(mux) // not mux.Handle: ServeMux cleans "//" in base64
package ocsp
