package pkcs11

import (
	"context"
	"strconv"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// pool hands out PKCS#11 sessions, one per concurrent operation: a session
// used by two goroutines at once corrupts the token's state (SoftHSM 2.6.1
// crashes the process). At most max sessions exist; callers beyond that wait
// for one, bounded by their context.
//
// The mutex guards only the idle list: nothing holds it during a PKCS#11
// call, so a slow signature never blocks another session's.
type pool struct {
	sem   chan struct{} // one slot per session in use
	done  chan struct{} // closed by shutdown: waiters give up
	open  func() (p11.SessionHandle, error)
	close func(p11.SessionHandle)

	mu     sync.Mutex
	idle   []p11.SessionHandle
	gen    uint64 // bumped by drain: sessions handed out earlier are closed on return
	closed bool
}

func newPool(max int, open func() (p11.SessionHandle, error), close func(p11.SessionHandle)) *pool {
	return &pool{sem: make(chan struct{}, max), done: make(chan struct{}), open: open, close: close}
}

// lease is a session checked out of the pool.
type lease struct {
	sh  p11.SessionHandle
	gen uint64
}

// get returns an idle session, or opens one if fewer than max exist. It
// waits while all max are in use, until ctx is done (the error then wraps
// ErrBusy and ctx.Err()).
func (p *pool) get(ctx context.Context) (lease, error) {
	select {
	case p.sem <- struct{}{}:
	case <-p.done:
		return lease{}, ErrClosed
	case <-ctx.Done():
		return lease{}, &busyError{max: cap(p.sem), err: ctx.Err()}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return lease{}, ErrClosed
	}
	gen := p.gen
	if n := len(p.idle); n > 0 {
		sh := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return lease{sh: sh, gen: gen}, nil
	}
	p.mu.Unlock()
	sh, err := p.open()
	if err != nil {
		<-p.sem
		return lease{}, err
	}
	return lease{sh: sh, gen: gen}, nil
}

// put returns a session. A session that failed (bad), or that was handed out
// before the last drain, or returned after close, is closed instead.
func (p *pool) put(l lease, bad bool) {
	p.mu.Lock()
	keep := !bad && !p.closed && l.gen == p.gen
	if keep {
		p.idle = append(p.idle, l.sh)
	}
	p.mu.Unlock()
	if !keep {
		p.close(l.sh)
	}
	<-p.sem
}

// add puts a session opened outside get (the one used to load the key) into
// the idle list, if there is room.
func (p *pool) add(sh p11.SessionHandle) {
	p.mu.Lock()
	keep := !p.closed && len(p.idle) < cap(p.sem)
	if keep {
		p.idle = append(p.idle, sh)
	}
	p.mu.Unlock()
	if !keep {
		p.close(sh)
	}
}

// drain closes the idle sessions and marks those in use for closing on
// return: after a token reset or C_CloseAllSessions they are all dead.
func (p *pool) drain() {
	p.mu.Lock()
	p.gen++
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, sh := range idle {
		p.close(sh)
	}
}

// shutdown stops handing out sessions, closes the idle ones and waits (until
// ctx is done) for those in use to come back, which put then closes. It
// reports whether every session came back.
func (p *pool) shutdown(ctx context.Context) bool {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, sh := range idle {
		p.close(sh)
	}
	// Taking every slot of the semaphore means no session is in use.
	for range cap(p.sem) {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// busyError: every session stayed in use for the whole wait.
type busyError struct {
	max int
	err error
}

func (e *busyError) Error() string {
	return "all " + strconv.Itoa(e.max) + " sessions busy: " + e.err.Error()
}

func (e *busyError) Unwrap() []error { return []error{ErrBusy, e.err} }
