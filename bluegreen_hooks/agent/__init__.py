"""The CodeDeploy agent's side: the appspec and ``bluegreen-hooks local``, which runs a revision as the agent does."""
