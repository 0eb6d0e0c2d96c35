package hcl

import (
	"errors"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions are the functions expressions may call: go-cty's stdlib under
// the names Terraform users know. Functions whose result can grow far
// beyond their input (range, setproduct, pow) are left out, since a
// descriptor is user input.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"abs":           stdlib.AbsoluteFunc,
		"ceil":          stdlib.CeilFunc,
		"chomp":         stdlib.ChompFunc,
		"coalesce":      stdlib.CoalesceFunc,
		"coalescelist":  stdlib.CoalesceListFunc,
		"compact":       stdlib.CompactFunc,
		"concat":        stdlib.ConcatFunc,
		"contains":      stdlib.ContainsFunc,
		"distinct":      stdlib.DistinctFunc,
		"element":       stdlib.ElementFunc,
		"flatten":       stdlib.FlattenFunc,
		"floor":         stdlib.FloorFunc,
		"format":        boundedFormat(stdlib.FormatFunc),
		"formatlist":    boundedFormat(stdlib.FormatListFunc),
		"join":          stdlib.JoinFunc,
		"jsondecode":    stdlib.JSONDecodeFunc,
		"jsonencode":    stdlib.JSONEncodeFunc,
		"keys":          stdlib.KeysFunc,
		"length":        stdlib.LengthFunc,
		"lookup":        stdlib.LookupFunc,
		"lower":         stdlib.LowerFunc,
		"max":           stdlib.MaxFunc,
		"merge":         stdlib.MergeFunc,
		"min":           stdlib.MinFunc,
		"parseint":      stdlib.ParseIntFunc,
		"regex":         stdlib.RegexFunc,
		"regexall":      stdlib.RegexAllFunc,
		"regex_replace": stdlib.RegexReplaceFunc,
		"replace":       stdlib.ReplaceFunc,
		"reverse":       stdlib.ReverseListFunc,
		"slice":         stdlib.SliceFunc,
		"sort":          stdlib.SortFunc,
		"split":         stdlib.SplitFunc,
		"strlen":        stdlib.StrlenFunc,
		"strrev":        stdlib.ReverseFunc,
		"substr":        stdlib.SubstrFunc,
		"title":         stdlib.TitleFunc,
		"tobool":        stdlib.MakeToFunc(cty.Bool),
		"tonumber":      stdlib.MakeToFunc(cty.Number),
		"tostring":      stdlib.MakeToFunc(cty.String),
		"trim":          stdlib.TrimFunc,
		"trimprefix":    stdlib.TrimPrefixFunc,
		"trimspace":     stdlib.TrimSpaceFunc,
		"trimsuffix":    stdlib.TrimSuffixFunc,
		"upper":         stdlib.UpperFunc,
		"values":        stdlib.ValuesFunc,
		"zipmap":        stdlib.ZipmapFunc,
	}
}

// maxFormatWidth bounds the width and precision of a format verb. stdlib
// pads to any width it is given, so "%9999999999s" would ask for gigabytes.
const maxFormatWidth = 10000

// boundedFormat is f (format or formatlist) refusing widths and precisions
// above maxFormatWidth in its first argument, the format string.
func boundedFormat(f function.Function) function.Function {
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 0 && args[0].Type() == cty.String && args[0].IsKnown() && !args[0].IsNull() {
				if err := checkFormatWidths(args[0].AsString()); err != nil {
					return cty.DynamicVal, function.NewArgError(0, err)
				}
			}
			return f.Call(args)
		},
	})
}

var errFormatWidth = errors.New("format widths and precisions must be at most 10000")

// checkFormatWidths refuses any run of digits after a '%' (through flags,
// an argument index, width and precision) that exceeds maxFormatWidth.
func checkFormatWidths(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			i++ // "%%" is a literal percent sign
			continue
		}
		n := 0
		for i++; i < len(s) && isFormatPart(s[i]); i++ {
			if s[i] < '0' || s[i] > '9' {
				n = 0
				continue
			}
			if n = n*10 + int(s[i]-'0'); n > maxFormatWidth {
				return errFormatWidth
			}
		}
		i-- // look at the verb letter again: it may be the next '%'
	}
	return nil
}

// isFormatPart reports whether c may come between '%' and a verb letter.
func isFormatPart(c byte) bool {
	switch c {
	case '-', '+', '#', ' ', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '.', '[', ']', '*':
		return true
	}
	return false
}
