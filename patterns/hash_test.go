package patterns

import (
	"strconv"
	"testing"
)

func TestShardOfIsStableAndBalanced(t *testing.T) {
	const n, keys = 5, 10000
	counts := make([]int, n)
	for i := 0; i < keys; i++ {
		k := "user-" + strconv.Itoa(i)
		s := ShardOf(k, n)
		if s != ShardOf(k, n) {
			t.Fatalf("key %q moved between two calls", k)
		}
		counts[s]++
	}
	for i, c := range counts {
		// Each shard should get 20% ± 3 points.
		if c < keys*17/100 || c > keys*23/100 {
			t.Errorf("shard %d got %d of %d keys; want about %d", i, c, keys, keys/n)
		}
	}
}

func TestReshardingMovesAboutOneOverN(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{1, 2}, {3, 4}, {4, 5}, {9, 10}} {
		moved := 0
		const keys = 10000
		for i := 0; i < keys; i++ {
			k := strconv.Itoa(i)
			a, b := ShardOf(k, tc.from), ShardOf(k, tc.to)
			if a != b {
				moved++
				if b != tc.to-1 {
					t.Fatalf("%d→%d: key %q moved from %d to old shard %d; keys may only move to the new shard", tc.from, tc.to, k, a, b)
				}
			}
		}
		want := float64(keys) / float64(tc.to)
		if f := float64(moved); f < want*0.85 || f > want*1.15 {
			t.Errorf("%d→%d shards moved %d of %d keys; want about %.0f (1/%d)", tc.from, tc.to, moved, keys, want, tc.to)
		}
	}
}

func TestPinnedShards(t *testing.T) {
	// The mapping is part of kiln's contract: a new kiln must not move the
	// keys of a running store. These values must never change.
	for _, tc := range []struct {
		key   string
		n     int
		shard int
	}{
		{"alice", 3, 2}, {"bob", 3, 2}, {"carol", 3, 1}, {"", 3, 0}, {"kv/42", 3, 0},
		{"alice", 16, 5}, {"carol", 16, 12}, {"", 16, 11},
	} {
		if got := ShardOf(tc.key, tc.n); got != tc.shard {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.shard)
		}
	}
}
