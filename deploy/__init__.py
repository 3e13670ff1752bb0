"""Moving models to the car and drives home, over OpenSSH and rsync."""
