# The search app as a descriptor.
service "search" {
  source = "."

  scatter {
    leaves        = 4
    gather        = "concat"
    timeout       = "500ms"
    on_leaf_error = "partial"
  }
}
