package schedule

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/certctl/certctl/certdb"
	"github.com/certctl/certctl/scan"
)

// Record turns a scan result into the record certdb stores: the result as
// JSON, its grade, its scan time (StartedAt, else now) and its leaf's
// serial and expiry. A leaf serial that is not a positive hex number (a
// malformed certificate) is left out of the record; it stays in the JSON.
func Record(res *scan.Result, now time.Time) (*certdb.ScanResult, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("schedule: encode scan result of %s: %v", res.Target, err)
	}
	r := &certdb.ScanResult{Target: res.Target.String(), Grade: res.Grade, ScannedAt: res.StartedAt, Result: b}
	if r.ScannedAt.IsZero() {
		r.ScannedAt = now
	}
	if c := res.Certificate; c != nil {
		na := c.NotAfter
		r.NotAfter = &na
		if sn, err := certdb.ParseSerial(c.Serial); err == nil {
			r.Serial = sn
		}
	}
	return r, nil
}

// Decode reads the scan.Result kept in a stored record.
func Decode(r *certdb.ScanResult) (*scan.Result, error) {
	var res scan.Result
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return nil, fmt.Errorf("schedule: stored scan result %d of %s: %v", r.ID, r.Target, err)
	}
	return &res, nil
}

// Diff is what changed between two scans of one endpoint.
type Diff struct {
	GradeBefore string `json:"grade_before"`
	GradeAfter  string `json:"grade_after"`
	// GradeDropped: the grade ranks lower than before (scan.GradeRank).
	GradeDropped bool `json:"grade_dropped,omitempty"`
	// FindingsAdded and FindingsRemoved compare findings by Check.
	FindingsAdded   []scan.Finding `json:"findings_added,omitempty"`
	FindingsRemoved []scan.Finding `json:"findings_removed,omitempty"`
	// CertificateChanged: the leaf's SHA-256 differs (or one scan saw none).
	CertificateChanged bool              `json:"certificate_changed,omitempty"`
	CertificateBefore  *scan.CertSummary `json:"certificate_before,omitempty"`
	CertificateAfter   *scan.CertSummary `json:"certificate_after,omitempty"`
	// ProtocolsAdded and ProtocolsRemoved list protocol versions that the
	// endpoint started or stopped accepting.
	ProtocolsAdded   []string `json:"protocols_added,omitempty"`
	ProtocolsRemoved []string `json:"protocols_removed,omitempty"`
	ErrorBefore      string   `json:"error_before,omitempty"`
	ErrorAfter       string   `json:"error_after,omitempty"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool {
	return d.GradeBefore == d.GradeAfter && len(d.FindingsAdded) == 0 && len(d.FindingsRemoved) == 0 &&
		!d.CertificateChanged && len(d.ProtocolsAdded) == 0 && len(d.ProtocolsRemoved) == 0 && d.ErrorBefore == d.ErrorAfter
}

// Compare returns what changed from prev to cur. A nil prev (first scan)
// compares with an empty result.
func Compare(prev, cur *scan.Result) *Diff {
	if prev == nil {
		prev = &scan.Result{}
	}
	d := &Diff{GradeBefore: prev.Grade, GradeAfter: cur.Grade, ErrorBefore: prev.Error, ErrorAfter: cur.Error}
	d.GradeDropped = (prev.Grade != "" || prev.Error != "") && scan.GradeRank(cur.Grade) < scan.GradeRank(prev.Grade)
	before, after := findingsByCheck(prev.Findings), findingsByCheck(cur.Findings)
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[k]; !ok {
			d.FindingsAdded = append(d.FindingsAdded, after[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[k]; !ok {
			d.FindingsRemoved = append(d.FindingsRemoved, before[k])
		}
	}
	if leafSHA(prev) != leafSHA(cur) {
		d.CertificateChanged = true
		d.CertificateBefore, d.CertificateAfter = prev.Certificate, cur.Certificate
	}
	pb, pa := protocols(prev), protocols(cur)
	for _, p := range slices.Sorted(maps.Keys(pa)) {
		if !pb[p] {
			d.ProtocolsAdded = append(d.ProtocolsAdded, p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(pb)) {
		if !pa[p] {
			d.ProtocolsRemoved = append(d.ProtocolsRemoved, p)
		}
	}
	return d
}

func findingsByCheck(fs []scan.Finding) map[string]scan.Finding {
	m := make(map[string]scan.Finding, len(fs))
	for _, f := range fs {
		if _, ok := m[f.Check]; !ok {
			m[f.Check] = f
		}
	}
	return m
}

func leafSHA(r *scan.Result) string {
	if r.Certificate == nil {
		return ""
	}
	return r.Certificate.SHA256
}

func protocols(r *scan.Result) map[string]bool {
	m := map[string]bool{}
	for _, p := range r.Protocols {
		if p.Supported {
			m[p.Name] = true
		}
	}
	return m
}
