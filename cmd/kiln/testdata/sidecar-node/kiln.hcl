# hello with an init container and a sidecar that share a volume with it,
# for the real node's test: the init container seeds the volume, the
# sidecar checks the seed and serves, on 9090, what the program answers on
# 127.0.0.1:8080 inside the pod.
app = "sidecar"

variable "sidecar_image" {
  description = "the image of deployer/docker/testdata/sidecar"
}

service "hello" {
  source = "../../../../examples/hello"
  simple { replicas = 3 }

  volume "shared" { path = "/shared" }
  init "seed" {
    image = var.sidecar_image
    args  = ["write", "/shared/seed", "from-init"]
    mount {
      volume = "shared"
      path   = "/shared"
    }
  }
  sidecar "agent" {
    image = var.sidecar_image
    args  = ["watch", "/shared/seed", "from-init"]
    ports = [9090]
    mount {
      volume = "shared"
      path   = "/shared"
    }
  }
}
