# A descriptor that sets every field of spec.Service across its services.

app = "shop"

variable "shards" {
  default     = 3
  description = "how many cart shards"
}

variable "registry" {
  type    = string
  default = "registry.example"
}

locals {
  prefix = "shop"
  image  = "${var.registry}/agent:1"
}

service "web" {
  source = "./cmd/web"
  port   = 8081
  public = true
  env    = { GREETING = "hello ${local.prefix}", MODE = upper("prod") }

  simple { replicas = 2 }

  resources {
    requests {
      cpu    = "250m"
      memory = "128Mi"
    }
    limits {
      cpu    = "1"
      memory = "256Mi"
    }
  }
  sidecar "agent" {
    image = local.image
    args  = ["--flag", "--dir=/cache"]
    env   = { A = "b" }
    ports = [9000, 9001]
    mount {
      volume = "cache"
      path   = "/cache"
    }
  }
  sidecar "shipper" {
    image = "${var.registry}/shipper:2"
    mount {
      volume = "logs"
      path   = "/logs"
    }
  }
  init "migrate" {
    image = "${var.registry}/migrate:1"
    args  = ["up"]
    env   = { DSN = format("postgres://%s-db/%s", local.prefix, lower("CARTS")) }
    ports = [9100]
    mount {
      volume = "cache"
      path   = "/warm"
    }
  }
  volume "cache" { path = "/var/cache" }
  volume "logs" {}
  lease "compactor" { duration = "30s" }
  probes {
    readiness {
      path   = "/ready"
      period = "5s"
    }
    liveness {
      path   = "/live"
      period = "10s"
    }
  }
  autoscale {
    min        = 1
    max        = 5
    target_cpu = 80
  }
}

service "kv" {
  source = "./cmd/kv"
  shard {
    shards     = var.shards
    ambassador = "web"
    key { path_segment = 2 }
  }
}

service "users" {
  routers = 3
  egress  = ["10.20.0.0/16"]
  shard {
    shards = 2
    key { regexp = "^/users/([0-9]+)" }
  }
}

service "tenants" {
  shard {
    shards = max(var.shards, 4)
    key { header = "X-Tenant" }
  }
}

service "sessions" {
  shard {
    shards = 2
    key { query = "session" }
  }
}

service "carts" {
  shard {
    shards = 2
    key { func = "CartKey" }
  }
  storage {
    size          = "2Gi"
    path          = "/var/lib/carts"
    class         = "fast"
    on_delete     = "delete"
    on_scale_down = "retain"
  }
}

service "search" {
  source = "../search"
  scatter {
    leaves        = 4
    gather        = "merge"
    timeout       = "1500ms"
    on_leaf_error = "partial"
  }
}

service "images" {
  spread {
    replicas = 4
    choice   = "random"
  }
}

service "migrate" {
  job {
    completions = 5
    parallelism = 2
    retries     = 3
    deadline    = "10m"
  }
}

service "report" {
  cron {
    schedule           = "*/5 * * * *"
    time_zone          = "Europe/Paris"
    concurrency_policy = "forbid"
    starting_deadline  = "30s"
    suspend            = true
    job {
      retries  = 1
      deadline = "1m"
    }
  }
}
