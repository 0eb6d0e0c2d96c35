# The kv app as a descriptor. kiln run ./examples/kv/kiln.hcl builds the
# program beside it and checks that the two agree: --var shards=4 is refused,
# since the program declares 3 (run it with KV_SHARDS=4 in the environment
# and both say 4).
variable "shards" {
  default     = 3
  description = "how many shards hold the keys"
}

service "kv" {
  source = "."

  shard {
    shards = var.shards
    key {
      path_segment = 2 # /kv/KEY
    }
  }
}
