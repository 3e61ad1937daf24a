"""The streaming pipeline: source rows → articles → chunks → vectors → points
(`run`), in windows (`windows`), with its summary (`summary`), dead letters
(`deadletters`) and progress line (`progress`)."""
