package kubetest

// Exited reports whether etcd and the API server have ended, for the
// tests of Stop and StopAPIServer.
func (s *Server) Exited() (etcd, apiserver bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcd.exited(), s.apiserver.exited()
}
