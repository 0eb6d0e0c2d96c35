package hcl

import hclv2 "github.com/hashicorp/hcl/v2"

// The structs gohcl decodes a descriptor into. Every attribute is optional
// at this level: a missing required value is left zero and reported by
// spec.App.Validate, on the enclosing block. Blocks that may appear at most
// once are still decoded as slices, so that a second one is reported on its
// own DefRange while the first is kept.

// fileSchema is the top level. Service bodies are decoded later, once
// variables and locals have values.
type fileSchema struct {
	App       hclv2.Expression `hcl:"app,optional"`
	AppRange  hclv2.Range      `hcl:"app,attr_range"`
	Variables []*variableBlock `hcl:"variable,block"`
	Locals    []*localsBlock   `hcl:"locals,block"`
	Services  []*serviceHeader `hcl:"service,block"`
}

type variableBlock struct {
	Name         string           `hcl:"name,label"`
	Type         hclv2.Expression `hcl:"type,optional"`
	TypeRange    hclv2.Range      `hcl:"type,attr_range"`
	Default      hclv2.Expression `hcl:"default,optional"`
	DefaultRange hclv2.Range      `hcl:"default,attr_range"`
	Description  string           `hcl:"description,optional"`
	DefRange     hclv2.Range      `hcl:",def_range"`
}

type localsBlock struct {
	Attrs hclv2.Attributes `hcl:",remain"`
}

type serviceHeader struct {
	Name     string      `hcl:"name,label"`
	Body     hclv2.Body  `hcl:",remain"`
	DefRange hclv2.Range `hcl:",def_range"`
}

type serviceBody struct {
	Source      *string          `hcl:"source,optional"`
	SourceRange hclv2.Range      `hcl:"source,attr_range"`
	Port        int              `hcl:"port,optional"`
	PortRange   hclv2.Range      `hcl:"port,attr_range"`
	Public      bool             `hcl:"public,optional"`
	PublicRange hclv2.Range      `hcl:"public,attr_range"`
	Routers     int              `hcl:"routers,optional"`
	RouterRange hclv2.Range      `hcl:"routers,attr_range"`
	Egress      []string         `hcl:"egress,optional"`
	EgressRange hclv2.Range      `hcl:"egress,attr_range"`
	Env         hclv2.Expression `hcl:"env,optional"`
	EnvRange    hclv2.Range      `hcl:"env,attr_range"`

	Simple    []*simpleBlock    `hcl:"simple,block"`
	Shard     []*shardBlock     `hcl:"shard,block"`
	Scatter   []*scatterBlock   `hcl:"scatter,block"`
	Spread    []*spreadBlock    `hcl:"spread,block"`
	Job       []*jobBlock       `hcl:"job,block"`
	Cron      []*cronBlock      `hcl:"cron,block"`
	Resources []*resourcesBlock `hcl:"resources,block"`
	Sidecars  []*containerBlock `hcl:"sidecar,block"`
	Init      []*containerBlock `hcl:"init,block"`
	Volumes   []*volumeBlock    `hcl:"volume,block"`
	Probes    []*probesBlock    `hcl:"probes,block"`
	Autoscale []*autoscaleBlock `hcl:"autoscale,block"`
	Leases    []*leaseBlock     `hcl:"lease,block"`
	Storage   []*storageBlock   `hcl:"storage,block"`
}

type simpleBlock struct {
	Replicas      int         `hcl:"replicas,optional"`
	ReplicasRange hclv2.Range `hcl:"replicas,attr_range"`
	DefRange      hclv2.Range `hcl:",def_range"`
}

type shardBlock struct {
	Shards          int         `hcl:"shards,optional"`
	ShardsRange     hclv2.Range `hcl:"shards,attr_range"`
	Ambassador      string      `hcl:"ambassador,optional"`
	AmbassadorRange hclv2.Range `hcl:"ambassador,attr_range"`
	Key             []*keyBlock `hcl:"key,block"`
	Body            hclv2.Body  `hcl:",body"`
	DefRange        hclv2.Range `hcl:",def_range"`
}

type keyBlock struct {
	PathSegment      int         `hcl:"path_segment,optional"`
	PathSegmentRange hclv2.Range `hcl:"path_segment,attr_range"`
	Regexp           string      `hcl:"regexp,optional"`
	RegexpRange      hclv2.Range `hcl:"regexp,attr_range"`
	Header           string      `hcl:"header,optional"`
	HeaderRange      hclv2.Range `hcl:"header,attr_range"`
	Query            string      `hcl:"query,optional"`
	QueryRange       hclv2.Range `hcl:"query,attr_range"`
	Func             string      `hcl:"func,optional"`
	FuncRange        hclv2.Range `hcl:"func,attr_range"`
	DefRange         hclv2.Range `hcl:",def_range"`
}

type scatterBlock struct {
	Leaves           int         `hcl:"leaves,optional"`
	LeavesRange      hclv2.Range `hcl:"leaves,attr_range"`
	Gather           string      `hcl:"gather,optional"`
	GatherRange      hclv2.Range `hcl:"gather,attr_range"`
	Timeout          string      `hcl:"timeout,optional"`
	TimeoutRange     hclv2.Range `hcl:"timeout,attr_range"`
	OnLeafError      string      `hcl:"on_leaf_error,optional"`
	OnLeafErrorRange hclv2.Range `hcl:"on_leaf_error,attr_range"`
	DefRange         hclv2.Range `hcl:",def_range"`
}

type spreadBlock struct {
	Replicas      int         `hcl:"replicas,optional"`
	ReplicasRange hclv2.Range `hcl:"replicas,attr_range"`
	Choice        string      `hcl:"choice,optional"`
	ChoiceRange   hclv2.Range `hcl:"choice,attr_range"`
	DefRange      hclv2.Range `hcl:",def_range"`
}

type jobBlock struct {
	Completions      int         `hcl:"completions,optional"`
	CompletionsRange hclv2.Range `hcl:"completions,attr_range"`
	Parallelism      int         `hcl:"parallelism,optional"`
	ParallelismRange hclv2.Range `hcl:"parallelism,attr_range"`
	Retries          int         `hcl:"retries,optional"`
	RetriesRange     hclv2.Range `hcl:"retries,attr_range"`
	Deadline         string      `hcl:"deadline,optional"`
	DeadlineRange    hclv2.Range `hcl:"deadline,attr_range"`
	DefRange         hclv2.Range `hcl:",def_range"`
}

type cronBlock struct {
	Schedule               string      `hcl:"schedule,optional"`
	ScheduleRange          hclv2.Range `hcl:"schedule,attr_range"`
	TimeZone               string      `hcl:"time_zone,optional"`
	TimeZoneRange          hclv2.Range `hcl:"time_zone,attr_range"`
	ConcurrencyPolicy      string      `hcl:"concurrency_policy,optional"`
	ConcurrencyPolicyRange hclv2.Range `hcl:"concurrency_policy,attr_range"`
	StartingDeadline       string      `hcl:"starting_deadline,optional"`
	StartingDeadlineRange  hclv2.Range `hcl:"starting_deadline,attr_range"`
	Suspend                bool        `hcl:"suspend,optional"`
	SuspendRange           hclv2.Range `hcl:"suspend,attr_range"`
	Job                    []*jobBlock `hcl:"job,block"`
	DefRange               hclv2.Range `hcl:",def_range"`
}

type resourcesBlock struct {
	Requests []*quantitiesBlock `hcl:"requests,block"`
	Limits   []*quantitiesBlock `hcl:"limits,block"`
	DefRange hclv2.Range        `hcl:",def_range"`
}

type quantitiesBlock struct {
	CPU         string      `hcl:"cpu,optional"`
	CPURange    hclv2.Range `hcl:"cpu,attr_range"`
	Memory      string      `hcl:"memory,optional"`
	MemoryRange hclv2.Range `hcl:"memory,attr_range"`
	DefRange    hclv2.Range `hcl:",def_range"`
}

type containerBlock struct {
	Name       string           `hcl:"name,label"`
	Image      string           `hcl:"image,optional"`
	ImageRange hclv2.Range      `hcl:"image,attr_range"`
	Args       []string         `hcl:"args,optional"`
	ArgsRange  hclv2.Range      `hcl:"args,attr_range"`
	Env        hclv2.Expression `hcl:"env,optional"`
	EnvRange   hclv2.Range      `hcl:"env,attr_range"`
	Ports      hclv2.Expression `hcl:"ports,optional"`
	PortsRange hclv2.Range      `hcl:"ports,attr_range"`
	Mounts     []*mountBlock    `hcl:"mount,block"`
	DefRange   hclv2.Range      `hcl:",def_range"`
}

type mountBlock struct {
	Volume      string      `hcl:"volume,optional"`
	VolumeRange hclv2.Range `hcl:"volume,attr_range"`
	Path        string      `hcl:"path,optional"`
	PathRange   hclv2.Range `hcl:"path,attr_range"`
	DefRange    hclv2.Range `hcl:",def_range"`
}

type volumeBlock struct {
	Name      string      `hcl:"name,label"`
	Path      string      `hcl:"path,optional"`
	PathRange hclv2.Range `hcl:"path,attr_range"`
	DefRange  hclv2.Range `hcl:",def_range"`
}

type storageBlock struct {
	Size             string      `hcl:"size,optional"`
	SizeRange        hclv2.Range `hcl:"size,attr_range"`
	Path             string      `hcl:"path,optional"`
	PathRange        hclv2.Range `hcl:"path,attr_range"`
	Class            string      `hcl:"class,optional"`
	ClassRange       hclv2.Range `hcl:"class,attr_range"`
	OnDelete         string      `hcl:"on_delete,optional"`
	OnDeleteRange    hclv2.Range `hcl:"on_delete,attr_range"`
	OnScaleDown      string      `hcl:"on_scale_down,optional"`
	OnScaleDownRange hclv2.Range `hcl:"on_scale_down,attr_range"`
	DefRange         hclv2.Range `hcl:",def_range"`
}

type leaseBlock struct {
	Name          string      `hcl:"name,label"`
	Duration      string      `hcl:"duration,optional"`
	DurationRange hclv2.Range `hcl:"duration,attr_range"`
	DefRange      hclv2.Range `hcl:",def_range"`
}

type probesBlock struct {
	Readiness []*probeBlock `hcl:"readiness,block"`
	Liveness  []*probeBlock `hcl:"liveness,block"`
	DefRange  hclv2.Range   `hcl:",def_range"`
}

type probeBlock struct {
	Path        string      `hcl:"path,optional"`
	PathRange   hclv2.Range `hcl:"path,attr_range"`
	Period      string      `hcl:"period,optional"`
	PeriodRange hclv2.Range `hcl:"period,attr_range"`
	DefRange    hclv2.Range `hcl:",def_range"`
}

type autoscaleBlock struct {
	Min            int         `hcl:"min,optional"`
	MinRange       hclv2.Range `hcl:"min,attr_range"`
	Max            int         `hcl:"max,optional"`
	MaxRange       hclv2.Range `hcl:"max,attr_range"`
	TargetCPU      int         `hcl:"target_cpu,optional"`
	TargetCPURange hclv2.Range `hcl:"target_cpu,attr_range"`
	DefRange       hclv2.Range `hcl:",def_range"`
}

// defRange lets single report a repeated block on its header.
func (b *simpleBlock) defRange() hclv2.Range     { return b.DefRange }
func (b *shardBlock) defRange() hclv2.Range      { return b.DefRange }
func (b *keyBlock) defRange() hclv2.Range        { return b.DefRange }
func (b *scatterBlock) defRange() hclv2.Range    { return b.DefRange }
func (b *spreadBlock) defRange() hclv2.Range     { return b.DefRange }
func (b *jobBlock) defRange() hclv2.Range        { return b.DefRange }
func (b *cronBlock) defRange() hclv2.Range       { return b.DefRange }
func (b *resourcesBlock) defRange() hclv2.Range  { return b.DefRange }
func (b *quantitiesBlock) defRange() hclv2.Range { return b.DefRange }
func (b *probesBlock) defRange() hclv2.Range     { return b.DefRange }
func (b *probeBlock) defRange() hclv2.Range      { return b.DefRange }
func (b *autoscaleBlock) defRange() hclv2.Range  { return b.DefRange }
func (b *storageBlock) defRange() hclv2.Range    { return b.DefRange }
