// Package deploy holds mimoq's container image (Dockerfile) and Kubernetes
// manifests (kubernetes/); docker-compose.yml and .env.example are at the
// repository root. It has no Go code: its tests check that the image, the
// compose file, the manifests and the example environment agree with each
// other and with what the mimoq binary reads.
package deploy
