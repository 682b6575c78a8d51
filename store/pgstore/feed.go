package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// The change feed.
//
// Triggers on the tables (migrations/0002_change_feed.sql) NOTIFY every
// change of a resource, and of a record in a namespace registered in the
// table feed_namespaces, in the transaction that makes it, on the channel
// of the schema. Watch registers its namespaces there for good: NOTIFY
// serializes the commits of all the transactions that use it, which
// namespaces that nobody watches (single-use tickets, issued tokens) are
// spared. Each Store LISTENs on one connection of its own (a pgx.Conn
// outside the pool, which could hand a pooled connection's LISTEN to
// anyone), opened by its first Watch and kept until Close, and hands what
// it hears to the store.Feed of its watchers.
//
// The guarantee: PostgreSQL delivers a notification to every session that
// listened before the notifying transaction committed, after the commit is
// visible, in commit order. So every change committed after Watch returns
// reaches fn while the connection lives. A connection that fails (an error,
// pg_terminate_backend, a restart of the server) or stays silent without
// answering a ping (a network that drops everything) is noticed within
// 2 × FeedCheckInterval; the watchers get an Interrupted, and the listener
// reconnects with a growing delay (feedMinBackoff to feedMaxBackoff, with
// jitter). Once it listens again, every watcher gets a Resync: what was
// committed meanwhile is reloaded, and what comes after is heard.
//
// A write whose trigger ran just before a namespace was first registered
// is not announced, even if it commits after Watch returns. So the watchers
// of a namespace registered less than feedRegistrationGrace ago get a
// Resync once that time has passed since the registration: by then every
// such write has ended (a store call is bounded by its query timeout).

// DefaultFeedCheckInterval is the Options.FeedCheckInterval of zero: a lost
// connection of the change feed is noticed within 4 s.
const DefaultFeedCheckInterval = 2 * time.Second

// The delays between the change feed's attempts to connect again: doubled
// after each failure, from the first to the last, with up to a quarter
// of jitter.
const (
	feedMinBackoff = 100 * time.Millisecond
	feedMaxBackoff = 5 * time.Second
)

// feedRegistrationGrace is how long after the registration of a namespace
// a write may still commit that did not see it: above the query timeout of
// every node (DefaultQueryTimeout is 10 s).
const feedRegistrationGrace = time.Minute

// channelOf is the notification channel of the tables in schema, as the
// triggers of 0002_change_feed.sql compute it: a channel name is an
// identifier of at most 63 bytes, a schema name may be as long.
func channelOf(schema string) string {
	sum := sha256.Sum256([]byte(schema))
	return "uma_changes_" + hex.EncodeToString(sum[:16])
}

// Watch calls fn with the changes of the records of namespaces, and of the
// resources for store.ResourcesNamespace, committed by any store on this
// database and schema (any node), until ctx ends or the store is closed
// (see store.Changes). The first Watch opens the store's listening
// connection; Watch registers the namespaces (see feed_namespaces) and
// returns once the connection listens, or fails if it cannot within the
// query timeout (or ctx's deadline). The first Watch of a namespace on a
// database is followed by a Resync a minute later (feedRegistrationGrace).
func (s *Store) Watch(ctx context.Context, fn func(store.Change), namespaces ...string) error {
	const op = "watching changes"
	if err := s.gate.Enter(ctx); err != nil {
		return wrap(op, err)
	}
	defer s.gate.Leave()
	remove, err := s.feed.Add(ctx, fn, namespaces)
	if err != nil {
		return wrap(op, err)
	}
	s.listener.start()
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	if err := s.listener.waitListening(ctx); err != nil {
		remove()
		return wrap(op, err)
	}
	young, err := s.registerNamespaces(ctx, namespaces)
	if err != nil {
		remove()
		return wrap(op, fmt.Errorf("registering the namespaces: %w", err))
	}
	if young > 0 {
		time.AfterFunc(young, func() { s.feed.Resync(namespaces...) })
	}
	return nil
}

// registerNamespaces registers the record namespaces among namespaces in
// feed_namespaces, so that the triggers announce their changes, and returns
// how long it is until the youngest registration among them is
// s.registrationGrace old (zero if all are).
func (s *Store) registerNamespaces(ctx context.Context, namespaces []string) (time.Duration, error) {
	var records []string
	for _, ns := range namespaces {
		if checkText("namespace", ns) == nil { // others hold no records
			records = append(records, ns)
		}
	}
	if len(records) == 0 {
		return 0, nil
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO feed_namespaces (namespace) SELECT unnest($1::text[])
		ON CONFLICT DO NOTHING`, records); err != nil {
		return 0, mapError(err)
	}
	var seconds *float64
	err := s.pool.QueryRow(ctx, `SELECT extract(epoch FROM max(since) + $2::interval - now())::float8
		FROM feed_namespaces WHERE namespace = ANY($1)`, records, s.registrationGrace).Scan(&seconds)
	if err != nil || seconds == nil || *seconds <= 0 {
		return 0, err
	}
	return time.Duration(*seconds * float64(time.Second)), nil
}

// listener is a Store's listening connection and the goroutine that reads
// it.
type listener struct {
	s      *Store
	config *pgx.ConnConfig
	check  time.Duration

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}

	mu sync.Mutex
	// listening is closed while the connection listens, and replaced by a
	// new one when it is lost.
	listening chan struct{}
	// lastErr is why the last connection failed or was lost.
	lastErr error
	// pid is the server process of the connection, while it listens.
	pid uint32
}

// init prepares l for the store s, with the connection settings of its pool
// and the check interval of its options.
func (l *listener) init(s *Store, config *pgx.ConnConfig, check time.Duration) {
	l.s = s
	l.config = config.Copy()
	if name := l.config.RuntimeParams["application_name"]; name != "" {
		l.config.RuntimeParams["application_name"] = name + " feed"
	}
	l.check = check
	if l.check <= 0 {
		l.check = DefaultFeedCheckInterval
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.done = make(chan struct{})
	l.listening = make(chan struct{})
}

// start starts the goroutine once.
func (l *listener) start() {
	l.startOnce.Do(func() { go l.run() })
}

// stop ends the goroutine and closes the connection.
func (l *listener) stop() {
	started := true
	l.startOnce.Do(func() { started = false })
	l.cancel()
	if started {
		<-l.done
	}
}

// waitListening waits until the connection listens.
func (l *listener) waitListening(ctx context.Context) error {
	l.mu.Lock()
	listening := l.listening
	l.mu.Unlock()
	select {
	case <-listening:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.lastErr != nil {
			return fmt.Errorf("no connection to listen on: %w (waited: %w)", l.lastErr, ctx.Err())
		}
		return fmt.Errorf("no connection to listen on yet: %w", ctx.Err())
	case <-l.ctx.Done():
		return store.ErrClosed
	}
}

// listenerPID is the server process of the listening connection, or 0.
func (l *listener) listenerPID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pid
}

// run connects, listens and reconnects until stop.
func (l *listener) run() {
	defer close(l.done)
	backoff := feedMinBackoff
	heard := false // a connection listened before: the next one resyncs
	for l.ctx.Err() == nil {
		conn, err := l.connect()
		if err != nil {
			l.mu.Lock()
			l.lastErr = err
			l.mu.Unlock()
			if !l.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, feedMaxBackoff)
			continue
		}
		backoff = feedMinBackoff
		l.mu.Lock()
		l.pid = conn.PgConn().PID()
		close(l.listening)
		l.mu.Unlock()
		if heard {
			l.s.logger.Info("pgstore: the change feed listens again")
			l.s.feed.Broadcast(store.Change{Resync: true})
		}
		heard = true

		err = l.receive(conn)

		l.mu.Lock()
		l.lastErr = err
		l.pid = 0
		l.listening = make(chan struct{})
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.check)
		_ = conn.Close(ctx)
		cancel()
		if l.ctx.Err() != nil {
			return
		}
		l.s.logger.Warn("pgstore: the change feed lost its connection; connecting again", zap.Error(err))
		l.s.feed.Broadcast(store.Change{Interrupted: true})
	}
}

// sleep waits for about d (with jitter), and reports false if stop came
// first.
func (l *listener) sleep(d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// connect opens a connection and listens on the channel of its schema,
// within the query timeout.
func (l *listener) connect() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.s.queryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.config)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	var schema *string
	err = conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema)
	if err == nil && schema == nil {
		err = errors.New("the search_path names no existing schema")
	}
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{channelOf(*schema)}.Sanitize())
	}
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("listening: %w", err)
	}
	return conn, nil
}

// receive hands every notification of conn to the feed until conn fails,
// stays silent and does not answer a ping within the check interval, or
// stop.
func (l *listener) receive(conn *pgx.Conn) error {
	for {
		ctx, cancel := context.WithTimeout(l.ctx, l.check)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		if err == nil {
			l.dispatch(n.Payload)
			continue
		}
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
			return err
		}
		// Silent for the whole interval: is the connection still there?
		ctx, cancel = context.WithTimeout(l.ctx, l.check)
		err = conn.Ping(ctx)
		cancel()
		if err != nil {
			if l.ctx.Err() != nil {
				return l.ctx.Err()
			}
			return fmt.Errorf("the connection does not answer: %w", err)
		}
	}
}

// dispatch hands a notification's payload to the feed: a change, or a
// Resync for a payload that does not name one.
func (l *listener) dispatch(payload string) {
	c, ok := parsePayload(payload)
	if !ok {
		l.s.feed.Broadcast(store.Change{Resync: true})
		return
	}
	l.s.feed.Publish(c)
}

// parsePayload reads a payload of the triggers: 'k' <bytes of the
// namespace> ':' <namespace> <key>, or 'r' <id>.
func parsePayload(p string) (store.Change, bool) {
	switch {
	case strings.HasPrefix(p, "r"):
		return store.Change{Namespace: store.ResourcesNamespace, Key: p[1:]}, true
	case strings.HasPrefix(p, "k"):
		size, rest, ok := strings.Cut(p[1:], ":")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n < 0 || n > len(rest) {
			return store.Change{}, false
		}
		return store.Change{Namespace: rest[:n], Key: unescapeKey(rest[n:])}, true
	}
	return store.Change{}, false
}
