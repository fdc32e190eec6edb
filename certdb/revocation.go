package certdb

import (
	"context"
	"fmt"
	"math/big"
	"time"
)

// OCSPResponse is a pre-signed OCSP response for one certificate, as the
// responder serves it (RFC 6960 / RFC 5019). The responder needs no CA key:
// it answers from these.
type OCSPResponse struct {
	Serial      *big.Int
	IssuerKeyID []byte    // SubjectKeyId of the certificate's issuer
	DER         []byte    // the signed OCSPResponse
	Status      Status    // certificate status the response asserts: StatusValid (good) or StatusRevoked
	ThisUpdate  time.Time // from the response
	NextUpdate  time.Time // from the response; the response must not be served after it
}

// MaxOCSPStaleLimit caps the page size of ListOCSPStale: larger than
// MaxLimit so that the pre-signer can sign in big batches.
const MaxOCSPStaleLimit = 10000

// OCSPStore keeps pre-signed OCSP responses.
type OCSPStore interface {
	// PutOCSPResponse stores r for its serial, replacing an older one. A
	// response never replaces one with a later ThisUpdate (concurrent
	// signers cannot roll a revoked answer back to good): that put is a
	// no-op returning nil; one with an equal ThisUpdate replaces it.
	// ErrNotFound if the serial is unknown, ErrNotIssued if it is only
	// reserved. An empty r.IssuerKeyID is taken from the certificate; one
	// that differs from the certificate's is ErrInvalid, and so are a
	// missing DER, a Status other than StatusValid or StatusRevoked, and a
	// zero ThisUpdate or NextUpdate.
	PutOCSPResponse(ctx context.Context, r *OCSPResponse) error
	// GetOCSPResponse returns the stored response for serial, or ErrNotFound.
	GetOCSPResponse(ctx context.Context, serial *big.Int) (*OCSPResponse, error)
	// ListOCSPStale returns up to limit issued certificates of issuerKeyID,
	// unexpired at now, whose stored response is missing, was signed before
	// signedBefore (ThisUpdate < signedBefore), or asserts a status that
	// differs from the certificate's current one; ordered by serial, after
	// the cursor `after` (nil = from the start). The pre-signer pages
	// through this. A limit ≤ 0 means DefaultLimit; larger than
	// MaxOCSPStaleLimit means MaxOCSPStaleLimit. Records are complete (DER
	// included), as GetCertificate returns them.
	ListOCSPStale(ctx context.Context, issuerKeyID []byte, signedBefore, now time.Time, after *big.Int, limit int) ([]*Certificate, error)
}

// CRL is a signed certificate revocation list for one shard of one issuer.
type CRL struct {
	IssuerKeyID []byte
	Shard       int      // 0 ≤ Shard < shard count
	Number      *big.Int // RFC 5280 §5.2.3 CRL number
	ThisUpdate  time.Time
	NextUpdate  time.Time
	DER         []byte
}

// CRLStore keeps CRL numbers and the latest CRL of each shard.
type CRLStore interface {
	// NextCRLNumber atomically allocates the next CRL number for
	// (issuerKeyID, shard): strictly greater than every number handed out
	// before, by any process; never reused, even if the CRL is never
	// stored. The first number of a shard is 1. ErrInvalid for a negative
	// shard.
	NextCRLNumber(ctx context.Context, issuerKeyID []byte, shard int) (*big.Int, error)
	// PutCRL stores c as the latest CRL of its shard unless a CRL with a
	// higher number is already stored (then it is a no-op returning nil);
	// one with an equal number replaces it. ErrInvalid for a negative
	// shard, a missing or negative Number, a missing DER, or a zero
	// ThisUpdate or NextUpdate.
	PutCRL(ctx context.Context, c *CRL) error
	// GetCRL returns the latest CRL of the shard, or ErrNotFound.
	GetCRL(ctx context.Context, issuerKeyID []byte, shard int) (*CRL, error)
	// ListRevokedShard streams the revoked certificates of issuerKeyID in
	// shard whose NotAfter is after now, ordered by serial, calling fn for
	// each. fn's certificate has no DER: only Serial, IssuerKeyID,
	// NotAfter, Status, RevokedAt, Reason and Shard are set; each call gets
	// a new one, which fn may keep. Memory stays flat however many there
	// are. fn runs while the store holds a database connection and a read
	// snapshot, so it should not block for long. An error from fn stops the
	// iteration and is returned (errors.Is finds it).
	ListRevokedShard(ctx context.Context, issuerKeyID []byte, shard int, now time.Time, fn func(*Certificate) error) error
}

// RevocationNotifier tells every process sharing the database that a
// certificate was revoked (PostgreSQL: LISTEN/NOTIFY; SQLite: in-process).
type RevocationNotifier interface {
	// NotifyRevoked announces serial's revocation. Stores may also send it
	// from Revoke itself; receivers must tolerate duplicates.
	NotifyRevoked(ctx context.Context, serial *big.Int) error
	// SubscribeRevocations delivers announced serials until ctx is done
	// or the store is closed (then the channel is closed). The
	// subscription is active when it returns: every announcement made
	// after that is delivered. After a connection loss the store
	// reconnects and sends a nil serial, meaning "you may have missed some:
	// rescan"; a receiver that falls behind may also get a nil instead of
	// some serials.
	SubscribeRevocations(ctx context.Context) (<-chan *big.Int, error)
}

// Locker elects a leader among processes sharing the database
// (PostgreSQL: session advisory locks; SQLite: within the process).
type Locker interface {
	// TryLock takes the named lock if it is free. When acquired, release
	// gives it up; the lock is also lost if the holder's connection dies,
	// which lost reports (closed) so the holder can stop leading. lost is
	// also closed by release, which is idempotent. When not acquired,
	// release is a no-op and lost is nil. ErrInvalid for an empty name.
	TryLock(ctx context.Context, name string) (acquired bool, release func(), lost <-chan struct{}, err error)
}

// Validate checks r before a store writes it: the parts every store
// requires, whatever its column types. Errors wrap ErrInvalid. The serial is
// checked by the store, which encodes it.
func (r *OCSPResponse) Validate() error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil response", ErrInvalid)
	case len(r.DER) == 0:
		return fmt.Errorf("%w: no DER", ErrInvalid)
	case r.Status != StatusValid && r.Status != StatusRevoked:
		return fmt.Errorf("%w: status %v (want valid or revoked)", ErrInvalid, r.Status)
	case r.ThisUpdate.IsZero() || r.NextUpdate.IsZero():
		return fmt.Errorf("%w: ThisUpdate and NextUpdate are required", ErrInvalid)
	}
	return nil
}

// Validate checks c before a store writes it. Errors wrap ErrInvalid.
// Stores add their own limit on how large Number may be.
func (c *CRL) Validate() error {
	switch {
	case c == nil:
		return fmt.Errorf("%w: nil CRL", ErrInvalid)
	case c.Number == nil || c.Number.Sign() < 0:
		return fmt.Errorf("%w: missing or negative number", ErrInvalid)
	case c.Shard < 0:
		return fmt.Errorf("%w: negative shard", ErrInvalid)
	case len(c.DER) == 0:
		return fmt.Errorf("%w: no DER", ErrInvalid)
	case c.ThisUpdate.IsZero() || c.NextUpdate.IsZero():
		return fmt.Errorf("%w: ThisUpdate and NextUpdate are required", ErrInvalid)
	}
	return nil
}
