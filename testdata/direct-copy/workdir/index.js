require("./src/main")
