package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// The calibration units: costs of this machine that the figures can be
// divided by, so that they compare across machines.

// es256Verify returns the time of one ES256 signature verification
// (P-256, SHA-256 of a token-sized input), in process: the median of
// batches over about budget.
func es256Verify(budget time.Duration) (time.Duration, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, err
	}
	input := make([]byte, 600)
	_, _ = rand.Read(input)
	sum := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return 0, err
	}
	return medianPerOp(budget, 50, func() error {
		s := sha256.Sum256(input)
		if !ecdsa.VerifyASN1(&key.PublicKey, s[:], sig) {
			return fmt.Errorf("ES256 verification failed")
		}
		return nil
	})
}

// fsyncFloor returns the time of one synced small write (append 128 bytes,
// fsync) of a file in dir: the least a durable commit costs on that
// filesystem.
func fsyncFloor(dir string, budget time.Duration) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-floor-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 128)
	return medianPerOp(budget, 1, func() error {
		if _, err := f.Write(rec); err != nil {
			return err
		}
		return f.Sync()
	})
}

// pgCommitFloor returns the time of one committed single-row INSERT on the
// PostgreSQL server of dsn (synchronous commit): the WAL flush plus a round
// trip, the least a durable write costs on that backend.
func pgCommitFloor(ctx context.Context, dsn string, budget time.Duration) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS bench_commit_floor (v bytea)"); err != nil {
		return 0, err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS bench_commit_floor") //nolint:errcheck
	rec := make([]byte, 128)
	return medianPerOp(budget, 1, func() error {
		_, err := conn.Exec(ctx, "INSERT INTO bench_commit_floor (v) VALUES ($1)", rec)
		return err
	})
}

// medianPerOp runs op in batches of n for about budget and returns the
// median time per op over the batches.
func medianPerOp(budget time.Duration, n int, op func() error) (time.Duration, error) {
	var per []time.Duration
	end := time.Now().Add(budget)
	for len(per) < 5 || time.Now().Before(end) {
		t0 := time.Now()
		for range n {
			if err := op(); err != nil {
				return 0, err
			}
		}
		per = append(per, time.Since(t0)/time.Duration(n))
	}
	slices.Sort(per)
	return per[len(per)/2], nil
}
