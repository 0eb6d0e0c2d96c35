# The shop app as a descriptor: three services, all built from the program
# beside this file, which declares the same three in Go.
app = "shop"

locals {
  program = "."
}

service "web" {
  source = local.program

  simple {
    replicas = 2
  }
}

service "carts" {
  source = local.program

  shard {
    shards = 3
    key {
      path_segment = 2 # /cart/USER
    }
  }
}

service "catalog" {
  source = local.program

  scatter {
    leaves        = 4
    gather        = "concat"
    timeout       = "500ms"
    on_leaf_error = "partial"
  }
}
