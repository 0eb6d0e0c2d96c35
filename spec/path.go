package spec

import (
	"fmt"
	"strconv"
)

// Path is a field path the way FieldError shows it:
// services[kv].shard.shards, services[web].env["MODE"],
// services[web].sidecars[0].image. Every layer that reports a problem with
// a field (validation, the deployers, the descriptor front-end that maps a
// path back to its source position) builds paths with these methods, so the
// same field always has the same path.
type Path string

// ServicePath is the path of services[i]: by name when it has one.
func ServicePath(i int, name string) Path {
	if name == "" {
		return Path("services[" + strconv.Itoa(i) + "]")
	}
	return Path("services[" + name + "]")
}

// Dot is the path of field name inside p.
func (p Path) Dot(name string) Path {
	if p == "" {
		return Path(name)
	}
	return p + "." + Path(name)
}

// Index is the path of element i of the list at p.
func (p Path) Index(i int) Path { return p + Path("["+strconv.Itoa(i)+"]") }

// Key is the path of key k of the map at p; the key is quoted, since map
// keys may hold any character.
func (p Path) Key(k string) Path { return p + Path(fmt.Sprintf("[%q]", k)) }
