# A descriptor with several problems, all of which Load reports.

app = "shop"

service "kv" {
  port = 8081
  env = {
    REGION = var.region
  }

  shard {
    # a shard count below one, and a key with two rules
    shards = 0
    key {
      header = "X-Key"
      query  = "key"
    }
  }
}

service "frontend" {
  simple { replicas = 2 }
  spread { replicas = 2 }
  env = { KILN_ROLE = "x" }
  probes {
    readiness {
      period = "soon"
    }
  }
  sidecar "agent" {
    mount {
      volume = "cache"
      path   = "/cache"
    }
  }
}
