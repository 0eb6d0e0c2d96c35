# The notes app, assembled from two main packages: each service names the
# program it is built from, and each program becomes its own binary (and
# image). Both programs also declare their service in Go; kiln checks that
# the two agree, and this file adds what only deployers use (env,
# resources).
app = "notes"

variable "title" {
  default = "my notes"
}

service "api" {
  source = "./api"
  env = {
    NOTES_TITLE = upper(var.title)
  }

  simple {
    replicas = 2
  }
}

service "store" {
  source = "./store"

  shard {
    shards = 2
    key {
      path_segment = 2 # /notes/BOOK
    }
  }

  resources {
    requests {
      memory = "64Mi"
    }
  }
}
