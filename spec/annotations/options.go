package annotations

import (
	"go/token"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// patternNames are the patterns, in the order messages list them.
var patternNames = []string{"simple", "shard", "scatter", "spread", "job", "cron"}

// patternsText lists the patterns for messages.
const patternsText = "simple, shard, scatter, spread, job or cron"

// jobOptions are the options of a job, and of a cron job's template.
var jobOptions = []string{"completions", "parallelism", "retries", "deadline"}

// patternOptions are the options each pattern takes, in the order messages
// list them.
var patternOptions = map[string][]string{
	"simple":  {"replicas", "port", "public", "egress", "lease", "lease-duration", "lead"},
	"shard":   {"shards", "key", "ambassador", "routers", "port", "public", "egress", "storage", "storage-path", "storage-class", "lease", "lease-duration", "lead"},
	"scatter": {"leaves", "gather", "timeout", "on-leaf-error", "routers", "port", "public", "egress", "storage", "storage-path", "storage-class", "lease", "lease-duration", "lead"},
	"spread":  {"replicas", "choice", "routers", "port", "public", "egress", "lease", "lease-duration", "lead"},
	"job":     append(slices.Clone(jobOptions), "egress"),
	"cron":    append(append([]string{"schedule", "time-zone", "concurrency", "starting-deadline", "suspend"}, jobOptions...), "egress"),
}

// requiredOptions are the options a pattern cannot do without.
var requiredOptions = map[string][]string{
	"simple":  {"replicas"},
	"shard":   {"shards", "key"},
	"scatter": {"leaves"},
	"spread":  {"replicas"},
	"cron":    {"schedule"},
}

// allOptions is every option, in the order messages list them.
var allOptions = []string{"replicas", "shards", "key", "ambassador", "leaves", "gather", "timeout", "on-leaf-error", "choice", "routers", "port", "public", "egress",
	"storage", "storage-path", "storage-class", "lease", "lease-duration", "lead", "schedule", "time-zone", "concurrency", "starting-deadline", "suspend", "completions", "parallelism", "retries", "deadline"}

// examples show each option written out, for messages.
var examples = map[string]string{
	"replicas":          "replicas=2",
	"shards":            "shards=3",
	"key":               "key=path:2",
	"ambassador":        "ambassador=web",
	"leaves":            "leaves=4",
	"gather":            "gather=concat",
	"timeout":           "timeout=500ms",
	"on-leaf-error":     "on-leaf-error=partial",
	"choice":            "choice=random",
	"routers":           "routers=3",
	"egress":            "egress=10.20.0.0/16,0.0.0.0/0",
	"port":              "port=8081",
	"public":            "public",
	"storage":           "storage=1Gi",
	"storage-path":      "storage-path=/data",
	"storage-class":     "storage-class=fast",
	"lease":             "lease=compactor",
	"lease-duration":    "lease-duration=15s",
	"lead":              "lead=Compact",
	"schedule":          `schedule="*/5 * * * *"`,
	"time-zone":         "time-zone=Europe/Paris",
	"concurrency":       "concurrency=forbid",
	"starting-deadline": "starting-deadline=30s",
	"suspend":           "suspend",
	"completions":       "completions=5",
	"parallelism":       "parallelism=2",
	"retries":           "retries=3",
	"deadline":          "deadline=10m",
}

// fields are the spec fields each option sets, under the pattern's field
// (or the service, for port and public, or its first lease, for the lease
// options), as spec.Path names them.
var fields = map[string]string{
	"replicas":          "replicas",
	"shards":            "shards",
	"key":               "key",
	"ambassador":        "ambassador",
	"leaves":            "leaves",
	"gather":            "gather",
	"timeout":           "timeout",
	"on-leaf-error":     "on_leaf_error",
	"choice":            "choice",
	"routers":           "routers",
	"egress":            "egress",
	"port":              "port",
	"public":            "public",
	"storage":           "size",
	"storage-path":      "path",
	"storage-class":     "class",
	"lease":             "name",
	"lease-duration":    "duration",
	"lead":              "name",
	"schedule":          "schedule",
	"time-zone":         "time_zone",
	"concurrency":       "concurrency_policy",
	"starting-deadline": "starting_deadline",
	"suspend":           "suspend",
	"completions":       "completions",
	"parallelism":       "parallelism",
	"retries":           "retries",
	"deadline":          "deadline",
}

// keyForms are the forms of key=, in the order messages list them.
var keyForms = []string{"path", "regexp", "header", "query", "func"}

const keyFormsText = "path:N, regexp:RE, header:NAME, query:NAME or func:Ident"

func isPattern(s string) bool { return slices.Contains(patternNames, s) }

// patternsOf lists the patterns that take option name.
func patternsOf(name string) []string {
	var out []string
	for _, pat := range patternNames {
		if slices.Contains(patternOptions[pat], name) {
			out = append(out, pat)
		}
	}
	return out
}

// values are the options of one //kiln:service as read, before they become
// a spec.Service.
type values struct {
	replicas, shards, leaves, port int
	routers                        int
	egress                         []string
	public                         bool
	key                            spec.Key
	keyFunc                        word // key=func:Ident, the Ident
	ambassador                     string
	gather                         string
	goGather                       word // gather=Ident for a Go gather
	timeout                        spec.Duration
	onLeafError, choice            string
	storage, storagePath           string
	storageClass                   string
	lease                          string
	leaseDuration                  spec.Duration
	lead                           word // lead=Ident, the leader function

	completions, parallelism, retries int
	deadline, startingDeadline        spec.Duration
	schedule, timeZone, concurrency   string
	suspend                           bool
}

// optionReader reads the option words of one //kiln:service.
type optionReader struct {
	*reader
	pattern string // "" when it is unknown
	v       *values
	// at holds where each option's value starts, by option name; a word
	// that failed stands for the option it meant to set.
	at map[string]word
	// mentioned holds the options the words name or likely meant to, right
	// or wrong, so that a required option written wrongly is not also
	// reported missing.
	mentioned map[string]bool
	seen      map[string]bool
}

// readOptions reads the option words of a //kiln:service whose pattern is
// pattern ("" when it is unknown), reporting every problem.
func (p *reader) readOptions(words []word, pattern string) *optionReader {
	o := &optionReader{reader: p, pattern: pattern, v: &values{}, at: map[string]word{}, mentioned: map[string]bool{}, seen: map[string]bool{}}
	for _, w := range words {
		name, _, _ := strings.Cut(w.text, "=")
		before := len(p.errs)
		o.read(w)
		if len(p.errs) > before {
			// What Validate says of the field this word meant to set
			// follows from the error, so it is placed here and dropped.
			p.bad[w.pos] = true
			meant := name
			if !slices.Contains(allOptions, name) {
				meant = suggest(name, allOptions)
			}
			if _, ok := o.at[meant]; !ok && meant != "" {
				o.at[meant] = w
			}
		}
	}
	return o
}

// takes lists the options of the pattern, for messages.
func (o *optionReader) takes() string {
	if o.pattern == "" {
		return "the options are " + list(allOptions, "and")
	}
	return "a " + o.pattern + " service takes " + list(patternOptions[o.pattern], "and")
}

// read reads one option word.
func (o *optionReader) read(w word) {
	name, value, hasValue := strings.Cut(w.text, "=")
	switch {
	case name == "":
		o.errorf(w.pos, "missing option name in %q; write name=value, like %s", w.text, examples["replicas"])
		return
	case !slices.Contains(allOptions, name):
		o.errorf(w.pos, "unknown option %q%s; %s", name, didYouMean(name, allOptions), o.takes())
		if s := suggest(name, allOptions); s != "" {
			o.mentioned[s] = true
		}
		return
	case o.seen[name]:
		o.errorf(w.pos, "option %s is given twice; remove one", name)
		return
	}
	o.seen[name] = true
	o.mentioned[name] = true
	if o.pattern != "" && !slices.Contains(patternOptions[o.pattern], name) {
		o.errorf(w.pos, "%s is an option of %s, not %s; %s", name, list(patternsOf(name), "and"), o.pattern, o.takes())
		return
	}
	valPos := w.pos + token.Pos(len(name)+1)
	if !hasValue {
		if name == "public" || name == "suspend" {
			o.readValue(o.v, name, "true", w.pos, nil)
			o.at[name] = word{text: name, pos: w.pos}
			return
		}
		o.errorf(w.end(), "missing value for %s; write %s", name, examples[name])
		return
	}
	o.at[name] = word{text: value, pos: valPos}
	s, ok := unquote(value)
	switch {
	case !ok:
		o.badQuoted(valPos, name+"=", value)
		return
	case s == "":
		o.errorf(valPos, "missing value for %s; write %s", name, examples[name])
		return
	}
	// A quoted value has no positions inside it.
	inner := func(off int) token.Pos {
		if isQuoted(value) {
			return valPos
		}
		return valPos + token.Pos(off)
	}
	if !o.readValue(o.v, name, s, valPos, inner) {
		o.bad[valPos] = true
	}
}

// badQuoted reports value, written after lhs, which starts like a Go string
// literal but is not one, showing how to write it.
func (p *reader) badQuoted(pos token.Pos, lhs, value string) {
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		inner := value[1 : len(value)-1]
		fix := lhs + strconv.Quote(inner)
		if strconv.CanBackquote(inner) {
			fix += " or " + lhs + "`" + inner + "`"
		}
		p.errorf(pos, "%s is not a Go string literal; write %s", value, fix)
		return
	}
	p.errorf(pos, "%s is not a Go string literal; write \"...\" with Go's escapes, or `...` for text as written", value)
}

// readValue reads s, the value of option name starting at pos, into v, and
// says whether it is usable. inner is the position of byte off of s.
func (p *reader) readValue(v *values, name, s string, pos token.Pos, inner func(off int) token.Pos) bool {
	switch name {
	case "replicas", "shards", "leaves", "routers":
		n, ok := p.count(name, s, pos)
		if !ok {
			return false
		}
		switch name {
		case "routers":
			v.routers = n
		case "replicas":
			v.replicas = n
		case "shards":
			v.shards = n
		case "leaves":
			v.leaves = n
		}
	case "port":
		n, err := strconv.Atoi(s)
		switch {
		case err != nil && !isRange(err):
			p.errorf(pos, "bad number %q for port; want a port in 1–65535, like %s", s, examples["port"])
			return false
		case err != nil || n < 1 || n > 65535:
			p.errorf(pos, "port=%s is out of range; want a port in 1–65535", s)
			return false
		}
		v.port = n
	case "public", "suspend":
		var b bool
		switch s {
		case "true":
			b = true
		case "false":
		default:
			p.errorf(pos, "bad value %q for %s; want %s, %s=true or %s=false", s, name, name, name, name)
			return false
		}
		if name == "public" {
			v.public = b
		} else {
			v.suspend = b
		}
	case "completions", "parallelism":
		n, ok := p.count(name, s, pos)
		if !ok {
			return false
		}
		if name == "completions" {
			v.completions = n
		} else {
			v.parallelism = n
		}
	case "retries":
		n, err := strconv.Atoi(s)
		switch {
		case err != nil && !isRange(err):
			p.errorf(pos, "bad number %q for retries; want a whole number, like %s", s, examples[name])
			return false
		case err != nil || n < 0:
			p.errorf(pos, "retries=%s is out of range; want 0 or more", s)
			return false
		}
		v.retries = n
	case "deadline", "starting-deadline":
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.errorf(pos, "bad duration %q for %s; want a Go duration with a unit, like %s", s, name, examples[name])
			return false
		case d < 0:
			p.errorf(pos, "%s=%s is out of range; want a duration ≥ 0", name, s)
			return false
		}
		if name == "deadline" {
			v.deadline = spec.Duration(d)
		} else {
			v.startingDeadline = spec.Duration(d)
		}
	case "storage":
		v.storage = s // spec.Validate checks these three
	case "storage-path":
		v.storagePath = s
	case "storage-class":
		v.storageClass = s
	case "lease":
		v.lease = s // spec.Validate checks the name
	case "lease-duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			p.errorf(pos, "bad duration %q for lease-duration; want a Go duration with a unit, like %s", s, examples[name])
			return false
		}
		v.leaseDuration = spec.Duration(d) // spec.Validate checks the range
	case "lead":
		if !token.IsIdentifier(s) {
			p.errorf(pos, "bad value %q for lead; want the name of a Go function of package %s, like %s", s, p.pkg.Name, examples[name])
			return false
		}
		v.lead = word{text: s, pos: pos}
	case "schedule":
		v.schedule = s // spec.Validate parses it, and says why at this word
	case "time-zone":
		v.timeZone = s
	case "concurrency":
		if s != spec.ConcurrencyAllow && s != spec.ConcurrencyForbid && s != spec.ConcurrencyReplace {
			p.errorf(pos, "bad value %q for concurrency; want allow, forbid or replace", s)
			return false
		}
		v.concurrency = s
	case "key":
		return p.readKey(v, s, pos, inner)
	case "ambassador":
		v.ambassador = s
	case "egress":
		// Each block is checked, at this word, with the spec.
		v.egress = strings.Split(s, ",")
	case "gather":
		switch {
		case builtinGather(s):
			v.gather = s
		case token.IsIdentifier(s):
			v.gather = s
			v.goGather = word{text: s, pos: pos}
		default:
			p.errorf(pos, "bad gather %q; want concat, merge, first or the name of a Go gather function of package %s", s, p.pkg.Name)
			return false
		}
	case "timeout":
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			p.errorf(pos, "bad duration %q for timeout; want a Go duration with a unit, like %s", s, examples["timeout"])
			return false
		case d <= 0:
			p.errorf(pos, "timeout=%s is out of range; want a duration > 0", s)
			return false
		}
		v.timeout = spec.Duration(d)
	case "on-leaf-error":
		if s != spec.OnLeafErrorFail && s != spec.OnLeafErrorPartial {
			p.errorf(pos, "bad value %q for on-leaf-error; want fail or partial", s)
			return false
		}
		v.onLeafError = s
	case "choice":
		if s != spec.ChoiceRandom && s != spec.ChoiceTwoChoices {
			p.errorf(pos, "bad value %q for choice; want random or two-choices", s)
			return false
		}
		v.choice = s
	}
	return true
}

// count reads a replica, shard or leaf count.
func (p *reader) count(name, s string, pos token.Pos) (int, bool) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil && !isRange(err):
		p.errorf(pos, "bad number %q for %s; want a whole number, like %s", s, name, examples[name])
		return 0, false
	case err != nil && strings.HasPrefix(s, "-"), err == nil && n < 1:
		p.errorf(pos, "%s=%s is out of range; want at least 1", name, s)
		return 0, false
	case err != nil:
		p.errorf(pos, "%s=%s is out of range; it is too large", name, s)
		return 0, false
	}
	return n, true
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// readKey reads key=KIND:REST.
func (p *reader) readKey(v *values, s string, pos token.Pos, inner func(off int) token.Pos) bool {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || !slices.Contains(keyForms, kind) {
		p.errorf(pos, "unknown key form %q%s; want %s", s, didYouMean(kind, keyForms), keyFormsText)
		return false
	}
	restPos := inner(len(kind) + 1)
	raw := rest
	rest, ok = unquote(rest)
	switch {
	case !ok:
		p.badQuoted(restPos, "key="+kind+":", raw)
		return false
	case rest == "":
		want := map[string]string{"path": "N", "regexp": "RE", "header": "NAME", "query": "NAME", "func": "Ident"}[kind]
		p.errorf(restPos, "missing %s after key=%s:; write key=%s:%s", want, kind, kind, want)
		return false
	}
	switch kind {
	case "path":
		n, err := strconv.Atoi(rest)
		switch {
		case err != nil && !isRange(err):
			p.errorf(restPos, "bad path segment %q in key=path:%s; want a whole number ≥ 1, like key=path:2", rest, raw)
			return false
		case err != nil || n < 1:
			p.errorf(restPos, "key=path:%s is out of range; want a path segment ≥ 1, like key=path:2", raw)
			return false
		}
		v.key = spec.Key{PathSegment: n}
	case "regexp":
		v.key = spec.Key{Regexp: rest}
	case "header":
		v.key = spec.Key{Header: rest}
	case "query":
		v.key = spec.Key{Query: rest}
	case "func":
		if !token.IsIdentifier(rest) {
			p.errorf(restPos, "bad key function %q; want the name of a Go function of package %s, like key=func:UserOf", rest, p.pkg.Name)
			return false
		}
		v.key = spec.Key{Func: rest}
		v.keyFunc = word{text: rest, pos: restPos}
	}
	return true
}
