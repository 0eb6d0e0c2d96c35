package spec

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// FieldError is one problem with one field of an App.
type FieldError struct {
	// Path locates the field: services[kv].shard.shards.
	Path Path
	Msg  string
}

func (e *FieldError) Error() string { return string(e.Path) + ": " + e.Msg }

// Errors is every problem Validate found, in field order.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err is es as an error: nil when es is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// MaxRouters bounds Routers: past a few, more routers add connections to
// every backend and no availability.
const MaxRouters = 16

// Default values filled in by SetDefaults.
const (
	DefaultTimeout = Duration(time.Second)
)

// SetDefaults fills the fields a front-end may leave out, so that every
// front-end's App encodes to the same JSON.
func (a *App) SetDefaults() {
	for i := range a.Services {
		s := &a.Services[i]
		if s.Port == 0 && s.Batch() == nil {
			s.Port = DefaultPort
		}
		if sg := s.Scatter; sg != nil {
			if sg.Gather == "" {
				sg.Gather = GatherConcat
			}
			if sg.Timeout == 0 {
				sg.Timeout = DefaultTimeout
			}
			if sg.OnLeafError == "" {
				sg.OnLeafError = OnLeafErrorFail
			}
		}
		if sp := s.Spread; sp != nil && sp.Choice == "" {
			sp.Choice = ChoiceTwoChoices
		}
		if c := s.Cron; c != nil && c.ConcurrencyPolicy == "" {
			c.ConcurrencyPolicy = ConcurrencyAllow
		}
		if s.Job != nil {
			s.Job.setDefaults()
		}
		if s.Cron != nil {
			s.Cron.Job.setDefaults()
		}
		if st := s.Storage; st != nil {
			st.Path = cmp.Or(st.Path, DefaultStoragePath)
			st.OnDelete = cmp.Or(st.OnDelete, StorageRetain)
			st.OnScaleDown = cmp.Or(st.OnScaleDown, StorageRetain)
		}
		for j := range s.Leases {
			if s.Leases[j].Duration == 0 {
				s.Leases[j].Duration = DefaultLeaseDuration
			}
		}
	}
	if a.Name == "" && len(a.Services) > 0 {
		a.Name = a.Services[0].Name
	}
}

func (j *Job) setDefaults() {
	if j.Completions == 0 {
		j.Completions = 1
	}
	if j.Parallelism == 0 {
		j.Parallelism = 1
	}
}

// dnsSubdomain is RFC 1123's subdomain: dot-separated labels.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// dnsLabel is RFC 1123: every target can use the name in a host name.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// validator collects FieldErrors under a path prefix.
type validator struct {
	errs Errors
}

func (v *validator) addf(path Path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) name(path Path, name string) {
	switch {
	case name == "":
		v.addf(path, "must be set")
	case len(name) > 63 || !dnsLabel.MatchString(name):
		v.addf(path, "%q is not a DNS label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
}

func (v *validator) atLeast(path Path, got, min int) {
	if got < min {
		v.addf(path, "must be ≥ %d, got %d", min, got)
	}
}

func (v *validator) port(path Path, p int) {
	if p < 1 || p > 65535 {
		v.addf(path, "must be a port in 1–65535, got %d", p)
	}
}

func (v *validator) oneOf(path Path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.addf(path, "must be one of %s, got %q", strings.Join(quoteAll(allowed), ", "), got)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// Validate reports every problem in a at once, each naming its field path.
// It returns nil or an Errors.
func (a *App) Validate() error {
	v := &validator{}
	v.name("name", a.Name)
	if len(a.Services) == 0 {
		v.addf("services", "must list at least one service")
	}
	seen := map[string]bool{}
	for i := range a.Services {
		s := &a.Services[i]
		p := ServicePath(i, s.Name)
		if seen[s.Name] && s.Name != "" {
			v.addf(p.Dot("name"), "%q is used by an earlier service; service names must be unique", s.Name)
		}
		seen[s.Name] = true
		s.validate(v, p)
	}
	return v.errs.Err()
}

func (s *Service) validate(v *validator, p Path) {
	v.name(p.Dot("name"), s.Name)
	if s.Port != 0 {
		v.port(p.Dot("port"), s.Port)
	}
	if s.Routers != 0 {
		switch {
		case s.Pattern() != "" && !s.HasRouter():
			v.addf(p.Dot("routers"), "a %s service has no router of its own; remove routers", s.Pattern())
		case s.Routers < 1 || s.Routers > MaxRouters:
			v.addf(p.Dot("routers"), "must be in 1–%d, got %d", MaxRouters, s.Routers)
		}
	}
	for i, cidr := range s.Egress {
		pfx, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil:
			v.addf(p.Dot("egress").Index(i), "%q is not an address block like \"10.0.0.0/8\", or \"0.0.0.0/0\" for anywhere", cidr)
		case pfx.Masked() != pfx:
			v.addf(p.Dot("egress").Index(i), "%q has host bits set; write %q", cidr, pfx.Masked().String())
		}
	}
	set := []string{}
	if s.Simple != nil {
		set = append(set, "simple")
		v.atLeast(p.Dot("simple").Dot("replicas"), s.Simple.Replicas, 1)
	}
	if s.Shard != nil {
		set = append(set, "shard")
		v.atLeast(p.Dot("shard").Dot("shards"), s.Shard.Shards, 1)
		s.Shard.Key.validate(v, p.Dot("shard").Dot("key"))
		if s.Shard.Ambassador != "" {
			v.name(p.Dot("shard").Dot("ambassador"), s.Shard.Ambassador)
		}
	}
	if sg := s.Scatter; sg != nil {
		set = append(set, "scatter")
		v.atLeast(p.Dot("scatter").Dot("leaves"), sg.Leaves, 1)
		if sg.Gather == "" {
			v.addf(p.Dot("scatter").Dot("gather"), "must be %q, %q, %q or the name of a Go gather function", GatherConcat, GatherMerge, GatherFirst)
		}
		if sg.Timeout <= 0 {
			v.addf(p.Dot("scatter").Dot("timeout"), "must be > 0, got %s", sg.Timeout.D())
		}
		v.oneOf(p.Dot("scatter").Dot("on_leaf_error"), sg.OnLeafError, OnLeafErrorFail, OnLeafErrorPartial)
	}
	if sp := s.Spread; sp != nil {
		set = append(set, "spread")
		v.atLeast(p.Dot("spread").Dot("replicas"), sp.Replicas, 1)
		v.oneOf(p.Dot("spread").Dot("choice"), sp.Choice, ChoiceRandom, ChoiceTwoChoices)
	}
	if s.Job != nil {
		set = append(set, "job")
		s.Job.validate(v, p.Dot("job"))
	}
	if c := s.Cron; c != nil {
		set = append(set, "cron")
		c.validate(v, p.Dot("cron"))
	}
	if s.Batch() != nil {
		s.validateBatch(v, p)
	}
	switch len(set) {
	case 0:
		v.addf(p, "must set one pattern: simple, shard, scatter, spread, job or cron")
	case 1:
	default:
		v.addf(p, "sets %s; a service follows exactly one pattern", strings.Join(set, " and "))
	}

	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == "" || strings.ContainsAny(k, "= \x00") {
			v.addf(p.Dot("env").Key(k), "is not a valid environment variable name")
		}
		if strings.HasPrefix(k, "KILN_") {
			v.addf(p.Dot("env").Key(k), "KILN_ variables are kiln's own; pick another name")
		}
	}
	if r := s.Resources; r != nil {
		v.quantities(p.Dot("resources").Dot("requests"), r.Requests)
		v.quantities(p.Dot("resources").Dot("limits"), r.Limits)
	}
	vols := map[string]bool{}
	for i, vol := range s.Volumes {
		vp := p.Dot("volumes").Index(i)
		v.name(vp.Dot("name"), vol.Name)
		if vol.Path != "" && !strings.HasPrefix(vol.Path, "/") {
			v.addf(vp.Dot("path"), "must be an absolute path, got %q", vol.Path)
		}
		vols[vol.Name] = true
	}
	names := map[string]bool{}
	for i := range s.Sidecars {
		s.Sidecars[i].validate(v, p.Dot("sidecars").Index(i), vols, names)
	}
	for i := range s.Init {
		s.Init[i].validate(v, p.Dot("init").Index(i), vols, names)
	}
	if st := s.Storage; st != nil {
		sp := p.Dot("storage")
		if s.Shard == nil && s.Scatter == nil {
			v.addf(sp, "only a shard or scatter service has storage: its instances have lasting identities, so instance i can always find volume i; a %s service's do not", cmp.Or(s.Pattern(), "patternless"))
		}
		switch {
		case st.Size == "":
			v.addf(sp.Dot("size"), "must be set, like \"1Gi\"")
		case !quantity.MatchString(st.Size) || strings.HasSuffix(st.Size, "m"):
			v.addf(sp.Dot("size"), "%q is not a size like \"512Mi\" or \"1Gi\"", st.Size)
		}
		if !strings.HasPrefix(st.Path, "/") || st.Path == "/" {
			v.addf(sp.Dot("path"), "must be an absolute path other than /, got %q", st.Path)
		}
		for _, vol := range s.Volumes {
			if vol.Path != "" && vol.Path == st.Path {
				v.addf(sp.Dot("path"), "%q is also the path of volume %q; give the storage a path of its own", st.Path, vol.Name)
			}
		}
		if st.Class != "" && (len(st.Class) > 253 || !dnsSubdomain.MatchString(st.Class)) {
			v.addf(sp.Dot("class"), "%q is not a storage class name", st.Class)
		}
		v.oneOf(sp.Dot("on_delete"), st.OnDelete, StorageRetain, StorageDelete)
		v.oneOf(sp.Dot("on_scale_down"), st.OnScaleDown, StorageRetain, StorageDelete)
	}
	leases := map[string]bool{}
	for i, l := range s.Leases {
		lp := p.Dot("leases").Index(i)
		v.name(lp.Dot("name"), l.Name)
		if leases[l.Name] && l.Name != "" {
			v.addf(lp.Dot("name"), "%q is used by an earlier lease of this service; lease names must be unique", l.Name)
		}
		leases[l.Name] = true
		switch d := l.Duration.D(); {
		case d < 2*time.Second || d > time.Hour:
			v.addf(lp.Dot("duration"), "must be 2s to 1h, got %s", d)
		case d%time.Second != 0:
			v.addf(lp.Dot("duration"), "must be a whole number of seconds (Kubernetes counts a Lease in seconds), got %s", d)
		}
	}
	if pr := s.Probes; pr != nil {
		for _, np := range []struct {
			name  string
			probe *Probe
		}{{"readiness", pr.Readiness}, {"liveness", pr.Liveness}} {
			if name, probe := np.name, np.probe; probe != nil && !strings.HasPrefix(probe.Path, "/") {
				v.addf(p.Dot("probes").Dot(name).Dot("path"), "must start with '/', got %q", probe.Path)
			}
		}
	}
	if as := s.Autoscale; as != nil {
		v.atLeast(p.Dot("autoscale").Dot("min"), as.Min, 1)
		if as.Max < as.Min {
			v.addf(p.Dot("autoscale").Dot("max"), "must be ≥ autoscale.min (%d), got %d", as.Min, as.Max)
		}
		if as.TargetCPU < 0 || as.TargetCPU > 100 {
			v.addf(p.Dot("autoscale").Dot("target_cpu"), "must be a percentage in 1–100, got %d", as.TargetCPU)
		}
	}
}

func (j *Job) validate(v *validator, p Path) {
	v.atLeast(p.Dot("completions"), j.Completions, 1)
	v.atLeast(p.Dot("parallelism"), j.Parallelism, 1)
	v.atLeast(p.Dot("retries"), j.Retries, 0)
	if j.Deadline < 0 {
		v.addf(p.Dot("deadline"), "must be ≥ 0 (0 means none), got %s", j.Deadline.D())
	}
}

func (c *Cron) validate(v *validator, p Path) {
	if err := ValidSchedule(c.Schedule); err != nil {
		v.addf(p.Dot("schedule"), "%v", err)
	}
	if c.TimeZone != "" {
		// time.LoadLocation reads "" and "Local" as the machine's zone,
		// which a cluster does not share.
		if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "Local" {
			v.addf(p.Dot("time_zone"), "%q is not an IANA time zone like \"Europe/Paris\" or \"UTC\"", c.TimeZone)
		}
	}
	v.oneOf(p.Dot("concurrency_policy"), c.ConcurrencyPolicy, ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace)
	if c.StartingDeadline < 0 {
		v.addf(p.Dot("starting_deadline"), "must be ≥ 0 (0 means none), got %s", c.StartingDeadline.D())
	}
	c.Job.validate(v, p.Dot("job"))
}

// validateBatch refuses what only a serving service can use.
func (s *Service) validateBatch(v *validator, p Path) {
	const why = "a %s service serves no requests; remove it"
	if s.Port != 0 {
		v.addf(p.Dot("port"), why, s.Pattern())
	}
	if s.Public {
		v.addf(p.Dot("public"), why, s.Pattern())
	}
	if s.Probes != nil {
		v.addf(p.Dot("probes"), why, s.Pattern())
	}
	if s.Autoscale != nil {
		v.addf(p.Dot("autoscale"), "a %s service has no replicas to scale; set its parallelism instead", s.Pattern())
	}
	if len(s.Leases) > 0 {
		v.addf(p.Dot("leases"), "a %s service's runs do not elect: leases belong to the replicas, shards or leaves of a serving service", s.Pattern())
	}
	if len(s.Sidecars) > 0 {
		v.addf(p.Dot("sidecars"), "a sidecar would keep each run of a %s service from completing; use init containers", s.Pattern())
	}
}

func (k Key) validate(v *validator, p Path) {
	n := 0
	if k.PathSegment != 0 {
		n++
		v.atLeast(p.Dot("path_segment"), k.PathSegment, 1)
	}
	if k.Regexp != "" {
		n++
		re, err := regexp.Compile(k.Regexp)
		switch {
		case err != nil:
			v.addf(p.Dot("regexp"), "does not compile: %v", err)
		case re.NumSubexp() < 1:
			v.addf(p.Dot("regexp"), "%q has no capture group; wrap the key in ( )", k.Regexp)
		}
	}
	if k.Header != "" {
		n++
	}
	if k.Query != "" {
		n++
	}
	if k.Func != "" {
		n++
	}
	switch {
	case n == 0:
		v.addf(p, "must set one of path_segment, regexp, header, query or func")
	case n > 1:
		v.addf(p, "sets %d key rules; set exactly one", n)
	}
}

func (c *Container) validate(v *validator, p Path, vols, names map[string]bool) {
	v.name(p.Dot("name"), c.Name)
	if names[c.Name] && c.Name != "" {
		v.addf(p.Dot("name"), "%q is used by another container of this service", c.Name)
	}
	names[c.Name] = true
	if c.Image == "" {
		v.addf(p.Dot("image"), "must be set")
	}
	for i, port := range c.Ports {
		v.port(p.Dot("ports").Index(i), port)
	}
	for i, m := range c.Mounts {
		mp := p.Dot("mounts").Index(i)
		if !vols[m.Volume] {
			v.addf(mp.Dot("volume"), "%q is not one of the service's volumes; declare it under volumes", m.Volume)
		}
		if !strings.HasPrefix(m.Path, "/") {
			v.addf(mp.Dot("path"), "must be an absolute path, got %q", m.Path)
		}
	}
}

// quantity is the subset of Kubernetes quantities kiln accepts.
var quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`)

func (v *validator) quantities(p Path, q Quantities) {
	if q.CPU != "" && !quantity.MatchString(q.CPU) {
		v.addf(p.Dot("cpu"), "%q is not a quantity like \"250m\" or \"1\"", q.CPU)
	}
	if q.Memory != "" && !quantity.MatchString(q.Memory) {
		v.addf(p.Dot("memory"), "%q is not a quantity like \"128Mi\"", q.Memory)
	}
}
