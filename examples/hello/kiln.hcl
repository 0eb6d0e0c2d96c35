# The hello app as a descriptor: kiln describe ./examples/hello/kiln.hcl
# prints the same spec as the program's own sdk.Run call.
service "hello" {
  source = "."

  simple {
    replicas = 3
  }
}
