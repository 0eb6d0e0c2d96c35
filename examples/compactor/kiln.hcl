# The compactor as a descriptor: kiln describe ./examples/compactor/kiln.hcl
# prints the same spec as the program's own sdk.Run call.
service "compactor" {
  source = "."

  simple {
    replicas = 3
  }

  lease "compactor" {
    duration = "5s"
  }
}
