"""unetbot's bot: Hub access, policy, publishing, the CLI and the embedded Hub server."""
