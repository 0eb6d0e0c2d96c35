// Package runas names the one non-root user that every image kiln builds
// runs as, and that every target runs its containers as: the builder
// writes it into the image, and the deployers ask for it again, so that a
// target which ignores the image's user (a Kubernetes securityContext, a
// Docker engine told otherwise) still runs the same identity.
package runas

// UID and GID are the user and group: 65532, "nonroot" in distroless
// images.
const (
	UID = 65532
	GID = 65532
)

// User is "UID:GID", as an image config and the Docker engine write it.
const User = "65532:65532"
