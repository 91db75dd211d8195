"""The waiting room: joining the line, signed tokens, position and wait estimates."""
