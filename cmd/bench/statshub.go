//go:build linux

package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ringfs/ringfs/engine"
)

// Limits of the hub's server, those of engine.ServeStats: small GET
// requests only, and a slow client cannot hold it.
const (
	hubMaxBody      = 1 << 10
	hubMaxHeader    = 8 << 10
	hubReadTimeout  = 5 * time.Second
	hubWriteTimeout = 10 * time.Second
	hubIdleTimeout  = 30 * time.Second
)

// statsHub serves engine stats on one Unix socket for the whole run,
// although every cell has its own engine, with the routes of
// engine.ServeStats (GET /stats, GET /files?limit=N). Each request is
// answered from the engine timing a round at that moment, whichever
// connection it came on: a client that keeps its connection open sees
// the next engine too. Between rounds both routes describe the last
// engine as its round ended, its final stats and the files it held then,
// so that they agree; before the first round both answer 503. So
// `fsctl stats --watch` can follow a run from start to end on one path.
type statsHub struct {
	srv *http.Server

	// mu is held for reading while a request reads the running engine,
	// so that detach, which takes it for writing, returns only once no
	// request uses that engine.
	mu        sync.RWMutex
	cur       *engine.Engine     // +checklocks:mu; the running round's, or nil
	last      *engine.Stats      // +checklocks:mu; the last engine's at the end of its round
	lastFiles []engine.FileStats // +checklocks:mu; its files then, most resident first
}

func newStatsHub(path string) (*statsHub, error) {
	l, err := engine.ListenStats(path)
	if err != nil {
		return nil, err
	}
	h := &statsHub{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", h.serveStats)
	mux.HandleFunc("GET /files", h.serveFiles)
	h.srv = &http.Server{
		Handler:           http.MaxBytesHandler(mux, hubMaxBody),
		ReadHeaderTimeout: hubReadTimeout,
		ReadTimeout:       hubReadTimeout,
		WriteTimeout:      hubWriteTimeout,
		IdleTimeout:       hubIdleTimeout,
		MaxHeaderBytes:    hubMaxHeader,
	}
	go h.srv.Serve(l)
	return h, nil
}

const noEngineYet = "no ringfs engine has run yet"

func (h *statsHub) serveStats(w http.ResponseWriter, _ *http.Request) {
	var st engine.Stats
	if !h.answer(func(e *engine.Engine) { st = e.Stats() }, func() { st = *h.last }) {
		http.Error(w, noEngineYet, http.StatusServiceUnavailable)
		return
	}
	serveJSON(w, st)
}

func (h *statsHub) serveFiles(w http.ResponseWriter, r *http.Request) {
	n := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	var files []engine.FileStats
	if !h.answer(func(e *engine.Engine) { files = e.FilesTop(n) }, func() {
		files = h.lastFiles
		if n > 0 && len(files) > n {
			files = files[:n]
		}
	}) {
		http.Error(w, noEngineYet, http.StatusServiceUnavailable)
		return
	}
	serveJSON(w, files)
}

// answer calls live with the engine running now or, between rounds, last
// (which reads what the last engine left), with h.mu held for reading;
// false before the first round.
func (h *statsHub) answer(live func(*engine.Engine), last func()) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case h.cur != nil:
		live(h.cur)
	case h.last != nil:
		last()
	default:
		return false
	}
	return true
}

func serveJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// attach answers requests from e until detach.
func (h *statsHub) attach(e *engine.Engine) {
	h.mu.Lock()
	h.cur = e
	h.mu.Unlock()
}

// detach keeps e's final stats and files for the time until the next
// round, and stops asking e: once it returns, no request uses e.
func (h *statsHub) detach(e *engine.Engine) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != e {
		return
	}
	st := e.Stats()
	h.cur, h.last, h.lastFiles = nil, &st, e.Files()
}

// close stops the server and removes the socket.
func (h *statsHub) close() { h.srv.Close() }
