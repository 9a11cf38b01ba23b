// Package deploy holds no code: its tests check the deployment files beside it (Kubernetes
// manifests, keepalived, Grafana and Prometheus files, the Debian package) against amqplb itself.
package deploy
