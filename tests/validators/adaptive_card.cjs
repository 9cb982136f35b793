// Validates Adaptive Cards with Microsoft's Adaptive Cards SDK (the `adaptivecards` npm
// package): parses each card as Teams' renderer would and runs its property validation.
// Usage: node adaptive_card.cjs CARDS.json   (a JSON array of cards)
// Prints one line per card; exits 1 if any card has a parse or validation event.
const fs = require("fs");
const AC = require("adaptivecards/dist/adaptivecards.js");

const cards = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let bad = 0;
cards.forEach((json, i) => {
  const card = new AC.AdaptiveCard();
  const ctx = new AC.SerializationContext();
  card.parse(json, ctx);
  const problems = [];
  for (let e = 0; e < ctx.eventCount; e++) problems.push(ctx.getEventAt(e).message);
  for (const e of card.validateProperties().validationEvents) problems.push(e.message);
  if (problems.length) {
    bad++;
    console.log(`card ${i}: ${problems.join("; ")}`);
  } else {
    console.log(`card ${i}: ok (${JSON.stringify(json).length} bytes)`);
  }
});
process.exit(bad ? 1 : 0);
