package spec

import "testing"

func TestStorageFieldsAreValidatedOnePathEach(t *testing.T) {
	kv := func(st *Storage) Service {
		return Service{Name: "kv", Shard: &Shard{Shards: 3, Key: Key{PathSegment: 2}}, Storage: st}
	}
	for _, tc := range []struct {
		name string
		svc  Service
		want string // "" when valid
	}{
		{"shard with defaults", kv(&Storage{Size: "1Gi"}), ""},
		{"leaves with every field", Service{Name: "search", Scatter: &Scatter{Leaves: 2}, Storage: &Storage{Size: "512Mi", Path: "/var/lib/index", Class: "fast.ssd", OnDelete: StorageDelete, OnScaleDown: StorageRetain}}, ""},
		{"no size", kv(&Storage{}), `services[kv].storage.size: must be set, like "1Gi"`},
		{"size that is no quantity", kv(&Storage{Size: "lots"}), `services[kv].storage.size: "lots" is not a size like "512Mi" or "1Gi"`},
		{"size in millibytes", kv(&Storage{Size: "500m"}), `services[kv].storage.size: "500m" is not a size like "512Mi" or "1Gi"`},
		{"relative path", kv(&Storage{Size: "1Gi", Path: "data"}), `services[kv].storage.path: must be an absolute path other than /, got "data"`},
		{"path of a volume", Service{Name: "kv", Shard: &Shard{Shards: 1, Key: Key{Header: "K"}}, Volumes: []Volume{{Name: "cache", Path: "/data"}}, Storage: &Storage{Size: "1Gi"}},
			`services[kv].storage.path: "/data" is also the path of volume "cache"; give the storage a path of its own`},
		{"bad class", kv(&Storage{Size: "1Gi", Class: "Fast_SSD"}), `services[kv].storage.class: "Fast_SSD" is not a storage class name`},
		{"bad policy", kv(&Storage{Size: "1Gi", OnScaleDown: "keep"}), `services[kv].storage.on_scale_down: must be one of "retain", "delete", got "keep"`},
		{"replicas have no identity", Service{Name: "web", Simple: &Simple{Replicas: 2}, Storage: &Storage{Size: "1Gi"}},
			`services[web].storage: only a shard or scatter service has storage: its instances have lasting identities, so instance i can always find volume i; a simple service's do not`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkValidate(t, tc.svc, tc.want) })
	}
}

func TestStorageDefaultsKeepDataAtSlashData(t *testing.T) {
	app := &App{Services: []Service{{Name: "kv", Shard: &Shard{Shards: 1, Key: Key{Header: "K"}}, Storage: &Storage{Size: "1Gi"}}}}
	app.SetDefaults()
	if got, want := *app.Services[0].Storage, (Storage{Size: "1Gi", Path: "/data", OnDelete: "retain", OnScaleDown: "retain"}); got != want {
		t.Errorf("after SetDefaults, Storage = %+v, want %+v", got, want)
	}
}
