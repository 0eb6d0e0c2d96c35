variable "shards" {
  default = 2
}

service "counter" {
  source = "."
  env = {
    GREETING = "hello"
  }

  shard {
    shards = var.shards
    key {
      header = "X-User"
    }
  }

  resources {
    limits {
      memory = "96Mi"
    }
  }
}
