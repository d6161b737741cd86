/** Unit tests run on the TypeScript sources; cluster tests spawn the built node processes (npm test builds first). */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testTimeout: 60000,
};
