package patterns

// ShardOf maps key to one of n shards with jump consistent hashing (Lamping
// and Veach): the same key always lands on the same shard, and going from n
// to n+1 shards moves only about 1/(n+1) of the keys. It is stable across
// processes and machines, unlike hash/maphash.
func ShardOf(key string, n int) int {
	return jump(mix(fnv64a(key)), n)
}

// mix spreads FNV's weak low bits (splitmix64's finalizer), so keys that
// differ in one character still scatter.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func jump(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// fnv64a is FNV-1a, inlined so hashing a key allocates nothing.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
