package ct_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ctgo "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/certctl/certctl/ct"
	"github.com/certctl/certctl/internal/pkitest"
	"github.com/certctl/certctl/issuance"
)

// TesseraCT serves no RFC 6962 read API (get-sth, get-proof-by-hash): its
// read side is the static-ct-api, a signed checkpoint and Merkle tiles on
// disk. This test reads them and checks that an issued certificate is in the
// log: the checkpoint's signature verifies against the log key, the leaf at
// the SCT's leaf_index is the RFC 6962 leaf hash of our certificate, and an
// inclusion proof built from the tile verifies against the signed root.
func TestInclusionProofFromTiles(t *testing.T) {
	ca := newTestCA(t)
	log := pkitest.StartCTLog(t, ca.interPEM)
	p := ctProfile(t, issuance.CTConfig{Logs: []issuance.CTLogConfig{logConfig(log.URL, log.PublicKeyPEM, "A")}, Require: 1})
	sub, err := ct.NewSubmitter(p.CT())
	if err != nil {
		t.Fatal(err)
	}
	// A few entries, so that the tree has more than one leaf.
	var (
		finalDER []byte
		sct      *ctgo.SignedCertificateTimestamp
	)
	for i := range 5 {
		tok, pre := ca.precert(t, p, fmt.Sprintf("incl%d.pki.internal", i))
		res, err := sub.SubmitPrecert(t.Context(), pre, ca.issuer.Cert().Raw)
		if err != nil || res.Quorum() != nil {
			t.Fatalf("submit: %v %v", err, res.Quorum())
		}
		list, err := ct.MarshalSCTList(res.SCTs)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if finalDER, err = ca.issuer.IssueFinal(tok, list); err != nil {
				t.Fatal(err)
			}
			sct = res.SCTs[0].SCT
		}
	}
	index := leafIndex(t, sct)
	final, err := ctx509.ParseCertificate(finalDER)
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := ctx509.ParseCertificate(ca.issuer.Cert().Raw)
	// The RFC 6962 MerkleTreeLeaf of the precertificate entry; a static-ct
	// log's leaf carries the SCT's extensions (the leaf index), which
	// ctutil.LeafHash leaves out.
	leaf, err := ctgo.MerkleTreeLeafForEmbeddedSCT([]*ctx509.Certificate{final, iss}, sct.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	leaf.TimestampedEntry.Extensions = sct.Extensions
	leafHash, err := ctgo.LeafHashForLeaf(leaf)
	if err != nil {
		t.Fatal(err)
	}

	// The checkpoint covers the entry once it is published (the log
	// answered after publication; poll in case the file lags).
	var sth *ctgo.SignedTreeHead
	deadline := time.Now().Add(10 * time.Second)
	for {
		sth = readCheckpoint(t, log)
		if sth.TreeSize > index {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint tree size %d does not cover leaf %d", sth.TreeSize, index)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sv, err := ctgo.NewSignatureVerifier(log.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := sv.VerifySTHSignature(*sth); err != nil {
		t.Fatalf("checkpoint signature: %v", err)
	}

	leaves := readLevel0(t, log, sth.TreeSize)
	if !bytes.Equal(leaves[index], leafHash[:]) {
		t.Fatalf("leaf %d in the tile is %x, want our certificate's leaf hash %x", index, leaves[index], leafHash)
	}
	path := inclusionPath(int(index), leaves)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, sth.TreeSize, leafHash[:], path, sth.SHA256RootHash[:]); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	// A wrong leaf does not verify.
	other := append([]byte(nil), leafHash[:]...)
	other[0] ^= 1
	if proof.VerifyInclusion(rfc6962.DefaultHasher, index, sth.TreeSize, other, path, sth.SHA256RootHash[:]) == nil {
		t.Fatal("inclusion proof verified for a different leaf")
	}
}

// leafIndex reads the static-ct-api leaf_index SCT extension: type 0,
// length 5, a 40-bit big-endian index.
func leafIndex(t *testing.T, sct *ctgo.SignedCertificateTimestamp) uint64 {
	t.Helper()
	e := []byte(sct.Extensions)
	if len(e) != 8 || e[0] != 0 || binary.BigEndian.Uint16(e[1:3]) != 5 {
		t.Fatalf("SCT extensions %x: no leaf_index", e)
	}
	var b [8]byte
	copy(b[3:], e[3:8])
	return binary.BigEndian.Uint64(b[:])
}

// readCheckpoint parses the signed note in storage/checkpoint: origin, tree
// size, root hash, then a signature line whose signature is key ID (4 bytes)
// || timestamp (8 bytes) || TLS DigitallySigned over the RFC 6962 tree head.
func readCheckpoint(t *testing.T, log *pkitest.CTLog) *ctgo.SignedTreeHead {
	t.Helper()
	b, err := log.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	body, sigs, ok := strings.Cut(string(b), "\n\n")
	lines := strings.Split(body, "\n")
	if !ok || len(lines) < 3 {
		t.Fatalf("checkpoint %q: not a signed note", b)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		t.Fatalf("checkpoint root %q: %v", lines[2], err)
	}
	f := strings.Fields(strings.SplitN(sigs, "\n", 2)[0])
	if len(f) != 3 || f[0] != "—" || f[1] != lines[0] {
		t.Fatalf("checkpoint signature line %q", sigs)
	}
	sig, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(sig) < 4+8+4 {
		t.Fatalf("checkpoint signature: %v", err)
	}
	sth := &ctgo.SignedTreeHead{Version: ctgo.V1, TreeSize: size, Timestamp: binary.BigEndian.Uint64(sig[4:12])}
	copy(sth.SHA256RootHash[:], root)
	if rest, err := cttls.Unmarshal(sig[12:], &sth.TreeHeadSignature); err != nil || len(rest) != 0 {
		t.Fatalf("checkpoint DigitallySigned: %v (%d trailing bytes)", err, len(rest))
	}
	return sth
}

// readLevel0 reads the leaf hashes of a tree of size leaves (< 256: one
// tile, "tile/0/000" when full, "tile/0/000.p/SIZE" when partial).
func readLevel0(t *testing.T, log *pkitest.CTLog, size uint64) [][]byte {
	t.Helper()
	if size == 0 || size > 256 {
		t.Fatalf("tree size %d: this test reads one level-0 tile", size)
	}
	name := filepath.Join(log.Dir, "storage", "tile", "0", "000")
	if size < 256 {
		name += ".p/" + strconv.FormatUint(size, 10)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(b)) != 32*size {
		t.Fatalf("tile %s: %d bytes, want %d", name, len(b), 32*size)
	}
	out := make([][]byte, size)
	for i := range out {
		out[i] = b[32*i : 32*i+32]
	}
	return out
}

// inclusionPath is RFC 6962 §2.1.1 PATH(m, D[n]) over leaf hashes.
func inclusionPath(m int, leaves [][]byte) [][]byte {
	n := len(leaves)
	if n <= 1 {
		return nil
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	if m < k {
		return append(inclusionPath(m, leaves[:k]), root(leaves[k:]))
	}
	return append(inclusionPath(m-k, leaves[k:]), root(leaves[:k]))
}

// root is RFC 6962 §2.1 MTH over leaf hashes.
func root(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k<<1 < len(leaves) {
		k <<= 1
	}
	return rfc6962.DefaultHasher.HashChildren(root(leaves[:k]), root(leaves[k:]))
}
