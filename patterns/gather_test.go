package patterns

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func parts(bodies ...string) []LeafResponse {
	out := make([]LeafResponse, len(bodies))
	for i, b := range bodies {
		out[i] = LeafResponse{Leaf: "leaf-" + itoa(i), Index: i, Response: Response{Status: 200, Body: []byte(b)}}
	}
	return out
}

func TestGathers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gather  GatherFunc
		in      []LeafResponse
		want    string
		badLeaf string
	}{
		{"concat", ConcatArrays, parts(`[1,2]`, `[]`, `["a", {"b": 1}]`), `[1,2,"a",{"b":1}]` + "\n", ""},
		{"concat none", ConcatArrays, nil, "[]\n", ""},
		{"concat not array", ConcatArrays, parts(`[1]`, `{"a":1}`), "", "leaf-1"},
		{"merge", MergeObjects, parts(`{"a":1,"n":{"x":1}}`, `{"b":2,"n":{"y":2}}`), `{"a":1,"b":2,"n":{"x":1,"y":2}}` + "\n", ""},
		{"merge later wins", MergeObjects, parts(`{"a":1}`, `{"a":2}`), `{"a":2}` + "\n", ""},
		{"merge big numbers stay exact", MergeObjects, parts(`{"id":12345678901234567890}`), `{"id":12345678901234567890}` + "\n", ""},
		{"merge not object", MergeObjects, parts(`{}`, `null`), "", "leaf-1"},
		{"first", First, parts(`x`, `y`), "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.gather(tc.in)
			if tc.badLeaf != "" {
				var le *LeafError
				if !errors.As(err, &le) || le.Leaf != tc.badLeaf {
					t.Fatalf("err = %v; want a LeafError blaming %s", err, tc.badLeaf)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Body) != tc.want {
				t.Fatalf("body = %q, want %q", got.Body, tc.want)
			}
		})
	}
}

func FuzzConcatArrays(f *testing.F) {
	f.Add(`[1,2]`, `["x"]`)
	f.Add(`[]`, `{}`)
	f.Add(`[{"a":[1]}]`, `[null,true]`)
	f.Fuzz(func(t *testing.T, a, b string) {
		got, err := ConcatArrays(parts(a, b))
		var xs, ys []any
		aOK := json.Unmarshal([]byte(a), &xs) == nil
		bOK := json.Unmarshal([]byte(b), &ys) == nil
		if !aOK || !bOK {
			var le *LeafError
			if !errors.As(err, &le) {
				t.Fatalf("bad leaf answer accepted: %q %q -> %v", a, b, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid arrays %q %q: %v", a, b, err)
		}
		var all []any
		if err := json.Unmarshal(got.Body, &all); err != nil {
			t.Fatalf("output %q is not JSON: %v", got.Body, err)
		}
		if want := append(xs, ys...); len(all) != len(want) || (len(want) > 0 && !reflect.DeepEqual(all, want)) {
			t.Fatalf("concat(%s, %s) = %s", a, b, got.Body)
		}
	})
}

func FuzzMergeObjects(f *testing.F) {
	f.Add(`{"a":1}`, `{"b":{"c":2}}`)
	f.Add(`{}`, `[]`)
	f.Fuzz(func(t *testing.T, a, b string) {
		got, err := MergeObjects(parts(a, b))
		var x, y map[string]any
		if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil || x == nil || y == nil {
			var le *LeafError
			if !errors.As(err, &le) {
				t.Fatalf("bad leaf answer accepted: %q %q -> %v", a, b, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid objects %q %q: %v", a, b, err)
		}
		var m map[string]any
		if err := json.Unmarshal(got.Body, &m); err != nil {
			t.Fatalf("output %q is not a JSON object: %v", got.Body, err)
		}
		for k := range y {
			if _, ok := m[k]; !ok {
				t.Fatalf("key %q of the second leaf is lost in %s", k, got.Body)
			}
		}
		for k := range x {
			if _, ok := m[k]; !ok {
				t.Fatalf("key %q of the first leaf is lost in %s", k, got.Body)
			}
		}
	})
}
