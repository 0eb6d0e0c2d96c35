# The durable kv store as a descriptor: kiln describe ./examples/kvstore/kiln.hcl
# prints the same spec as the program's own calls.
app = "kvstore"

service "kvstore" {
  source = "."

  shard {
    shards = 3
    key {
      path_segment = 2
    }
  }

  storage {
    size = "1Gi"
  }
}
