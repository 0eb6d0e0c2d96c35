package patterns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/kiln-dev/kiln/spec"
)

// Response is an HTTP answer held in memory.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// LeafResponse is one leaf's successful (2xx) answer.
type LeafResponse struct {
	Leaf  string // "leaf-2"
	Index int
	Response
}

// GatherFunc merges the leaves' answers, given in leaf order, into one. A
// zero Status means 200. Return a *LeafError to blame one leaf's answer:
// under the "partial" policy the root then leaves that leaf out and gathers
// again.
type GatherFunc func(parts []LeafResponse) (Response, error)

// LeafError says which leaf's answer a gather could not use, and why.
type LeafError struct {
	Leaf string
	Err  error
}

func (e *LeafError) Error() string { return e.Leaf + ": " + e.Err.Error() }
func (e *LeafError) Unwrap() error { return e.Err }

// BuiltinGather returns the gather called name, or nil when kiln has none by
// that name.
func BuiltinGather(name string) GatherFunc {
	switch name {
	case spec.GatherConcat:
		return ConcatArrays
	case spec.GatherMerge:
		return MergeObjects
	case spec.GatherFirst:
		return First
	}
	return nil
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// ConcatArrays concatenates the leaves' JSON arrays in leaf order.
func ConcatArrays(parts []LeafResponse) (Response, error) {
	var out bytes.Buffer
	out.WriteByte('[')
	n := 0
	for _, p := range parts {
		var items []json.RawMessage
		if err := json.Unmarshal(p.Body, &items); err != nil {
			return Response{}, &LeafError{Leaf: p.Leaf, Err: fmt.Errorf("answer is not a JSON array: %w", err)}
		}
		for _, it := range items {
			if n > 0 {
				out.WriteByte(',')
			}
			if err := json.Compact(&out, it); err != nil {
				return Response{}, &LeafError{Leaf: p.Leaf, Err: err}
			}
			n++
		}
	}
	out.WriteString("]\n")
	return Response{Header: jsonHeader.Clone(), Body: out.Bytes()}, nil
}

// MergeObjects deep-merges the leaves' JSON objects: nested objects merge,
// and for any other value a later leaf wins. Keys come out sorted.
func MergeObjects(parts []LeafResponse) (Response, error) {
	merged := map[string]any{}
	for _, p := range parts {
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(p.Body))
		dec.UseNumber() // keep large integers exact
		err := dec.Decode(&obj)
		switch {
		case err != nil:
		case obj == nil:
			err = errors.New("null")
		case dec.Decode(&struct{}{}) != io.EOF:
			err = errors.New("data after the object")
		}
		if err != nil {
			return Response{}, &LeafError{Leaf: p.Leaf, Err: fmt.Errorf("answer is not a JSON object: %w", err)}
		}
		mergeInto(merged, obj)
	}
	body, err := json.Marshal(merged)
	if err != nil {
		return Response{}, err
	}
	return Response{Header: jsonHeader.Clone(), Body: append(body, '\n')}, nil
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sub, ok := v.(map[string]any)
		if old, isObj := dst[k].(map[string]any); ok && isObj {
			mergeInto(old, sub)
			continue
		}
		dst[k] = v
	}
}

// First answers with the first successful leaf's response. The root calls
// it as soon as one leaf succeeds, without waiting for the others.
func First(parts []LeafResponse) (Response, error) {
	if len(parts) == 0 {
		return Response{}, errors.New("no leaf answered")
	}
	return parts[0].Response, nil
}

// isFirst reports whether g is the First gather, which lets the root answer
// before every leaf has.
func isFirst(name string) bool { return name == spec.GatherFirst }

// sortParts puts answers in leaf order so gathers are deterministic.
func sortParts(parts []LeafResponse) {
	slices.SortFunc(parts, func(a, b LeafResponse) int { return a.Index - b.Index })
}
